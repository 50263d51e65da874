// Package demo is `tunnel-agent demo`: the tutorial's two sites built in
// throwaway network namespaces on this machine, one `tunnel-agent up` per
// site started as a process from a generated site file, traffic shown
// crossing the tunnel both ways, and everything removed. It drives the
// agents only through their command line (up, status), as a user would.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// Run builds the tutorial's setup in throwaway namespaces on this
// machine, runs one agent per site from config files, shows traffic
// crossing the tunnel both ways, and removes everything, writing what it
// does to out. The last line says whether it all worked; the error is
// that line when it did not. agentArgs are passed to each `tunnel-agent
// up` (the log flags). Cancelling ctx stops it, cleaning up. Needs root.
func Run(ctx context.Context, out io.Writer, agentArgs []string) error {
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root to create network namespaces (sudo go run ./cmd/tunnel-agent demo)")
	}
	d := &demo{out: out, agentArgs: agentArgs}
	err := d.run(ctx)
	if ctx.Err() != nil && err != nil {
		err = errors.New("interrupted")
	}
	cleanErr := d.cleanup()
	line := demoResult(err, cleanErr, d.tcp)
	fmt.Fprintln(out, line)
	if err != nil || cleanErr != nil {
		return errors.New(line)
	}
	return nil
}

type demo struct {
	out       io.Writer
	agentArgs []string // log flags passed on to the agents
	dir       string
	t         *topo.Topology
	agents    []*demoAgent
	tcp       *probe.TransferResult // the TCP transfer, once done
}

// demoResult is the demo's last line: what worked, or the first thing
// that did not (err from the traffic, cleanErr from stopping the agents
// and removing the namespaces).
func demoResult(err, cleanErr error, tcp *probe.TransferResult) string {
	switch {
	case err != nil && cleanErr != nil:
		return fmt.Sprintf("demo: FAILED: %v; cleaning up: %v", err, cleanErr)
	case err != nil:
		return fmt.Sprintf("demo: FAILED: %v (host restored)", err)
	case cleanErr != nil:
		return fmt.Sprintf("demo: FAILED: cleaning up: %v", cleanErr)
	}
	return fmt.Sprintf("demo: OK: ping both ways, TCP %d MiB at %.0f Mbit/s, host restored", tcp.Bytes>>20, tcp.Throughput/1e6)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "==> "+format+"\n", args...)
}

func (d *demo) run(ctx context.Context) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "tunnel-agent-demo-"); err != nil {
		return err
	}
	prefix := "tademo" + randHex(3)
	d.say("building the tutorial's topology in network namespaces %s-* (client, gateway A, NAT router, VPS)", prefix)
	if d.t, err = topo.Build(topo.Options{Prefix: prefix, NAT: true}); err != nil {
		return err
	}
	d.describeTopology()
	if err := d.startAgents(ctx); err != nil {
		return err
	}
	return d.showTraffic(ctx)
}

func (d *demo) describeTopology() {
	t := d.t
	d.say("client host %s (ns %s) -- gateway A lan0 %s (ns %s) -- NAT %s (ns %s) -- VPS %s (ns %s)",
		t.ClientAddr, t.Client, t.GatewayALAN, t.GatewayA, t.NATOutside, t.NAT, t.GatewayBWAN, t.GatewayB)
	d.say("the VPS's agent will create ns %s holding %s behind veth0/veth1, as in the tutorial", t.SiteBNS, t.SiteBHost)
}

func (d *demo) startAgents(ctx context.Context) error {
	for _, s := range []struct{ site, ns, yaml string }{
		{"server", d.t.GatewayB, d.t.SiteBYAML("server")},
		{"client", d.t.GatewayA, d.t.SiteAYAML("client")},
	} {
		path := filepath.Join(d.dir, s.site+".yaml")
		if err := os.WriteFile(path, []byte(s.yaml), 0o600); err != nil {
			return err
		}
		d.say("starting the %s site's agent: tunnel-agent up -c %s (in ns %s)", s.site, path, s.ns)
		a, err := startDemoAgent(ctx, s.ns, s.site, path, filepath.Join(d.dir, s.site+"-state"), d.agentArgs, d.out)
		if err != nil {
			return err
		}
		d.agents = append(d.agents, a)
	}
	return nil
}

// cleanup stops the agents (they revert their host changes) and removes
// the topology. It returns what went wrong.
func (d *demo) cleanup() error {
	var errs []error
	for i := len(d.agents) - 1; i >= 0; i-- {
		errs = append(errs, d.agents[i].stop())
	}
	if d.t != nil {
		d.say("removing the namespaces")
		if err := d.t.Close(); err != nil {
			d.say("cleanup: %v", err)
			errs = append(errs, err)
		}
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	return errors.Join(errs...)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
