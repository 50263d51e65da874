package agent

import (
	"strings"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// TestLifecycleEBPFRefusedWithoutBPF: on a system that cannot load eBPF
// programs, `up` of an ebpf site fails with a clear error instead of
// running the userspace path, before it changes anything on the host.
func TestLifecycleEBPFRefusedWithoutBPF(t *testing.T) {
	yaml := strings.Replace(clientYAML, "\ntunnel:\n", "\ntunnel:\n  dataplane: ebpf\n", 1)
	if yaml == clientYAML {
		t.Fatal("clientYAML has no tunnel section")
	}
	s := newTestSite(t, clientHost(t), dptest.NewNetwork(), wanA, yaml)
	_, err := s.run("up")
	if err == nil || !strings.Contains(err.Error(), "cannot run the eBPF dataplane") {
		t.Fatalf("up: %v, want the eBPF refusal", err)
	}
	s.checkRestored("after the refused up")
	if n := len(s.sys.host.MutatingCalls()); n != 0 {
		t.Errorf("up changed the host before refusing: %d changes", n)
	}
	out, err := s.run("check")
	if err == nil || !strings.Contains(err.Error(), "cannot run the eBPF dataplane") {
		t.Errorf("check: %v\n%s", err, out)
	}
}
