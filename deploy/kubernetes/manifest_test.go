// Package kubernetes holds the DaemonSet manifest; its test checks the
// fields the deployment relies on (docs/scale.md).
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"tunnel-agent/agent/config"
)

// The parts of the manifest the test reads.
type (
	object struct {
		Kind     string                `yaml:"kind"`
		Metadata struct{ Name string } `yaml:"metadata"`
		Data     map[string]string     `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	podSpec struct {
		HostNetwork bool        `yaml:"hostNetwork"`
		Containers  []container `yaml:"containers"`
		Volumes     []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			HostPath *struct {
				Path string `yaml:"path"`
			} `yaml:"hostPath"`
		} `yaml:"volumes"`
	}
	container struct {
		Args            []string `yaml:"args"`
		SecurityContext struct {
			Capabilities struct {
				Add  []string `yaml:"add"`
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		ReadinessProbe struct {
			Exec struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"readinessProbe"`
		VolumeMounts []struct {
			Name        string `yaml:"name"`
			MountPath   string `yaml:"mountPath"`
			SubPathExpr string `yaml:"subPathExpr"`
		} `yaml:"volumeMounts"`
	}
)

func load(t *testing.T) map[string]object {
	t.Helper()
	data, err := os.ReadFile("tunnel-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("tunnel-agent.yaml: %v", err)
		}
		objs[o.Kind] = o
	}
}

func TestDaemonSetManifest(t *testing.T) {
	objs := load(t)
	ds, ok := objs["DaemonSet"]
	if !ok {
		t.Fatal("no DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("hostNetwork is not true: the agent must configure the node's network")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	caps := c.SecurityContext.Capabilities
	add := slices.Sorted(slices.Values(caps.Add))
	if !slices.Equal(add, []string{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(caps.Drop, []string{"ALL"}) {
		t.Errorf("capabilities add %v drop %v, want exactly NET_ADMIN and NET_RAW on top of dropping ALL", caps.Add, caps.Drop)
	}
	cfg := argAfter(c.Args, "-c")
	if len(c.Args) == 0 || c.Args[0] != "up" || cfg == "" {
		t.Fatalf("args %v, want up -c FILE", c.Args)
	}
	probe := c.ReadinessProbe.Exec.Command
	if len(probe) < 2 || probe[1] != "status" || argAfter(probe, "-c") != cfg {
		t.Errorf("readiness probe %v, want `tunnel-agent status -c %s`", probe, cfg)
	}
	checkConfigMount(t, pod, c, cfg, objs["ConfigMap"])
}

// checkConfigMount: the config file comes from the manifest's ConfigMap,
// one key per node, and every site file in it is valid.
func checkConfigMount(t *testing.T, pod podSpec, c container, cfg string, cm object) {
	t.Helper()
	var vol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == cfg {
			vol = m.Name
			if m.SubPathExpr != "$(NODE_NAME).yaml" {
				t.Errorf("config mount subPathExpr %q, want $(NODE_NAME).yaml", m.SubPathExpr)
			}
		}
	}
	found := false
	for _, v := range pod.Volumes {
		if v.Name == vol && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
			found = true
		}
	}
	if vol == "" || !found {
		t.Fatalf("%s is not mounted from the ConfigMap %q", cfg, cm.Metadata.Name)
	}
	if len(cm.Data) == 0 {
		t.Fatal("the ConfigMap holds no site file")
	}
	for key, site := range cm.Data {
		if _, err := config.Parse(key, []byte(site), nil); err != nil {
			t.Errorf("site file %s in the ConfigMap: %v", key, err)
		}
	}
}

// argAfter returns the argument following flag, or "".
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}
