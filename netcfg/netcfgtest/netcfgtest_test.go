package netcfgtest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"tunnel-agent/netcfg"
)

// errClass sorts an error as netcfg does: success, gone, already there,
// an injected fault, or anything else.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, netcfg.ErrNotFound):
		return "not found"
	case errors.Is(err, netcfg.ErrExists):
		return "exists"
	case errors.Is(err, ErrInjected):
		return "injected"
	}
	return "other"
}

// TestFakeHostKernelErrors: the fake answers as the kernel (through
// NetlinkHost) does; checked side by side against Linux 6.18.
func TestFakeHostKernelErrors(t *testing.T) {
	p := netip.MustParsePrefix("10.1.0.1/24")
	P, A := netip.MustParsePrefix, netip.MustParseAddr
	tests := []struct {
		name string
		do   func(f *Host) error
		want string // errClass
	}{
		{"create existing namespace", func(f *Host) error { return f.CreateNamespace("ns1") }, "exists"},
		{"delete missing namespace", func(f *Host) error { return f.DeleteNamespace("nope") }, "not found"},
		{"link in missing namespace", func(f *Host) error { _, err := f.Link("nope", "lo"); return err }, "not found"},
		{"missing link", func(f *Host) error { _, err := f.Link("", "nope"); return err }, "not found"},
		{"veth host end exists", func(f *Host) error { return f.AddVeth("veth0", "x", "") }, "exists"},
		{"veth peer exists", func(f *Host) error { return f.AddVeth("x", "veth1", "ns1") }, "exists"},
		{"veth into missing namespace", func(f *Host) error { return f.AddVeth("x", "y", "nope") }, "not found"},
		{"delete missing link", func(f *Host) error { return f.DeleteLink("", "nope") }, "not found"},
		{"MTU of missing link", func(f *Host) error { return f.SetMTU("ns1", "nope", 1400) }, "not found"},
		{"MTU too small", func(f *Host) error { return f.SetMTU("", "veth0", 10) }, "other"},
		{"add existing address", func(f *Host) error { return f.AddAddr("", "veth0", p) }, "exists"},
		{"same address, other length", func(f *Host) error { return f.AddAddr("", "veth0", P("10.1.0.1/16")) }, "ok"},
		{"delete missing address", func(f *Host) error { return f.DelAddr("", "veth0", P("10.1.0.2/24")) }, "not found"},
		{"address on missing link", func(f *Host) error { return f.AddAddr("", "nope", p) }, "not found"},
		{"missing route", func(f *Host) error { _, err := f.Route("", P("10.9.0.0/16")); return err }, "not found"},
		{"route in missing namespace", func(f *Host) error { _, err := f.Route("nope", P("0.0.0.0/0")); return err }, "not found"},
		{"delete missing route", func(f *Host) error {
			return f.DelRoute("", netcfg.RouteSpec{Dst: P("10.9.0.0/16"), Type: netcfg.RouteBlackhole})
		}, "not found"},
		{"delete route of another protocol", func(f *Host) error {
			return f.DelRoute("", netcfg.RouteSpec{Dst: P("10.8.0.0/16"), Type: netcfg.RouteBlackhole, Protocol: netcfg.RouteProtocol})
		}, "not found"},
		{"gateway in a connected subnet", func(f *Host) error {
			return f.ReplaceRoute("", netcfg.RouteSpec{Dst: P("10.9.0.0/16"), Gw: A("10.1.0.254"), Type: netcfg.RouteUnicast})
		}, "ok"},
		{"gateway unreachable", func(f *Host) error {
			return f.ReplaceRoute("", netcfg.RouteSpec{Dst: P("10.9.0.0/16"), Gw: A("10.99.0.1"), Type: netcfg.RouteUnicast})
		}, "other"},
		{"route through a down link", func(f *Host) error {
			return f.ReplaceRoute("ns1", netcfg.RouteSpec{Dst: P("10.9.0.0/16"), Dev: "veth1", Type: netcfg.RouteUnicast, Scope: 253})
		}, "other"},
		{"destination with host bits", func(f *Host) error {
			return f.ReplaceRoute("", netcfg.RouteSpec{Dst: P("10.9.0.1/16"), Type: netcfg.RouteBlackhole})
		}, "other"},
		{"unknown feature", func(f *Host) error { return f.SetFeatures("", "veth0", map[string]bool{"nope": true}) }, "other"},
		{"fixed feature: ignored", func(f *Host) error { return f.SetFeatures("", "veth0", map[string]bool{"rx-lro": true}) }, "ok"},
		{"failAt", func(f *Host) error { f.FailAt(1); return f.SetMTU("", "veth0", 1400) }, "injected"},
		{"failIf", func(f *Host) error {
			f.FailIf(func(c Call) bool { return c.Op == "SetMTU" && c.Link == "veth0" })
			if err := f.SetMTU("ns1", "veth1", 1400); err != nil {
				return fmt.Errorf("failIf matched the wrong call: %v", err)
			}
			return f.SetMTU("", "veth0", 1400)
		}, "injected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			f.Must(t,
				f.CreateNamespace("ns1"),
				f.AddVeth("veth0", "veth1", "ns1"),
				f.AddAddr("", "veth0", p),
				f.SetUp("", "veth0", true),
				f.ReplaceRoute("", netcfg.RouteSpec{Dst: netip.MustParsePrefix("10.8.0.0/16"), Type: netcfg.RouteBlackhole, Protocol: 4}),
			)
			if err := tt.do(f); errClass(err) != tt.want {
				t.Errorf("got %v (%s), want %s", err, errClass(err), tt.want)
			}
		})
	}
}

func TestFakeHostCascades(t *testing.T) {
	f := New()
	gw := netcfg.RouteSpec{Dst: netip.MustParsePrefix("10.9.0.0/16"), Gw: netip.MustParseAddr("10.1.0.254"), Type: netcfg.RouteUnicast, Protocol: netcfg.RouteProtocol}
	f.Must(t,
		f.CreateNamespace("ns1"),
		f.AddVeth("veth0", "veth1", "ns1"),
		f.AddAddr("", "veth0", netip.MustParsePrefix("10.1.0.1/24")),
		f.SetUp("", "veth0", true),
		f.ReplaceRoute("", gw),
	)
	r, err := f.Route("", gw.Dst)
	if err != nil || r.Dev != "veth0" {
		t.Fatalf("gateway route = %+v, %v; want dev veth0", r, err)
	}
	// Down flushes routes through the link, up brings the connected one back.
	f.Must(t, f.SetUp("", "veth0", false))
	if _, err := f.Route("", gw.Dst); !errors.Is(err, netcfg.ErrNotFound) {
		t.Errorf("route survived link down: %v", err)
	}
	f.Must(t, f.SetUp("", "veth0", true))
	if r, err := f.Route("", netip.MustParsePrefix("10.1.0.0/24")); err != nil || r.Protocol != 2 || r.Src != netip.MustParseAddr("10.1.0.1") {
		t.Errorf("connected route after up = %+v, %v", r, err)
	}
	// Deleting the last IPv4 address flushes every route through the link.
	dev := netcfg.RouteSpec{Dst: netip.MustParsePrefix("10.11.0.0/16"), Dev: "veth0", Type: netcfg.RouteUnicast, Protocol: 4, Scope: 253}
	f.Must(t, f.ReplaceRoute("", dev), f.DelAddr("", "veth0", netip.MustParsePrefix("10.1.0.1/24")))
	if _, err := f.Route("", dev.Dst); !errors.Is(err, netcfg.ErrNotFound) {
		t.Errorf("route through veth0 survived deleting its last address: %v", err)
	}
	// lo gets 127.0.0.1/8 when it comes up, and keeps it.
	f.Must(t, f.SetUp("ns1", "lo", true), f.SetUp("ns1", "lo", false))
	if ok, _ := f.HasAddr("ns1", "lo", netip.MustParsePrefix("127.0.0.1/8")); !ok {
		t.Errorf("lo lacks 127.0.0.1/8 after up and down")
	}
	// Deleting the namespace of the peer deletes the host end too.
	f.Must(t, f.DeleteNamespace("ns1"))
	if _, err := f.Link("", "veth0"); !errors.Is(err, netcfg.ErrNotFound) {
		t.Errorf("veth0 survived deleting its peer's namespace: %v", err)
	}
	if got, want := f.Dump(), New().Dump(); got != want {
		t.Errorf("dump after cleanup:\n%s\nwant:\n%s", got, want)
	}
	// Deleting either end of a pair deletes both.
	for _, end := range []struct{ ns, name string }{{"", "a0"}, {"", "a1"}} {
		f.Must(t, f.AddVeth("a0", "a1", ""), f.DeleteLink(end.ns, end.name))
		if got, want := f.Dump(), New().Dump(); got != want {
			t.Errorf("after deleting %s:\n%s", end.name, got)
		}
	}
	// Kill before and after the change.
	for _, after := range []bool{false, true} {
		g := New()
		g.KillAt(1, after)
		func() {
			defer func() {
				if r := recover(); r != ErrKilled {
					t.Errorf("recover() = %v, want ErrKilled", r)
				}
			}()
			_ = g.CreateNamespace("x")
		}()
		if ok := g.nss["x"] != nil; ok != after {
			t.Errorf("killAfter=%v: namespace created = %v", after, ok)
		}
	}
}

func TestFakeHostFeatures(t *testing.T) {
	f := New()
	f.Must(t, f.AddVeth("veth0", "veth1", ""))
	// tx off: TSO stays requested but goes inactive; a fixed feature is
	// silently left alone.
	f.Must(t, f.SetFeatures("", "veth0", map[string]bool{"tx-checksum-ip-generic": false, "tx-lockless": false}))
	fs, err := f.Features("", "veth0")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]netcfg.FeatureInfo{
		"tx-checksum-ip-generic": {Requested: false, Active: false},
		"tx-tcp-segmentation":    {Requested: true, Active: false},
		"tx-lockless":            {Requested: false, Active: true, Fixed: true},
		"rx-checksum":            {Requested: true, Active: true},
	}
	for name, w := range want {
		if fs[name] != w {
			t.Errorf("%s = %+v, want %+v", name, fs[name], w)
		}
	}
	if d := f.Dump(); !strings.Contains(d, "host feature veth0 tx-tcp-segmentation requested=on active=off") {
		t.Errorf("dump lacks the inactive TSO:\n%s", d)
	}
}

// TestIndexAndSubscribe: a link made again gets a new index (a capture
// bound to the old one must notice), dumps do not show indexes, and
// every change made kicks the subscribers until they unsubscribe.
func TestIndexAndSubscribe(t *testing.T) {
	f := New()
	kicks := make(chan struct{}, 16)
	done := make(chan struct{})
	if err := f.Subscribe("", func() { kicks <- struct{}{} }, func(error) {}, done); err != nil {
		t.Fatal(err)
	}
	if err := f.Subscribe("nope", func() {}, func(error) {}, done); !errors.Is(err, netcfg.ErrNotFound) {
		t.Errorf("Subscribe to a missing namespace: %v, want ErrNotFound", err)
	}
	before := f.Dump()
	f.Must(t, f.AddVeth("a0", "a1", ""))
	first, _ := f.LinkState("", "a0")
	f.Must(t, f.DeleteLink("", "a0"), f.AddVeth("a0", "a1", ""))
	again, _ := f.LinkState("", "a0")
	if first.Index == 0 || again.Index == first.Index {
		t.Errorf("indexes %d then %d; want a new one for the link made again", first.Index, again.Index)
	}
	if err := f.SetMTU("", "nope", 1400); err == nil {
		t.Fatal("SetMTU of a missing link succeeded")
	}
	if n := len(kicks); n != 3 {
		t.Errorf("%d kicks for 3 changes and a failed call", n)
	}
	close(done)
	f.Must(t, f.DeleteLink("", "a0"))
	if f.Dump() != before {
		t.Errorf("dump after removing the pair:\n%s", f.Dump())
	}
	for len(kicks) > 0 {
		<-kicks
	}
	// The unsubscription is asynchronous (done is watched by a
	// goroutine); kickAll checks done itself, so no kick follows it.
	f.Must(t, f.SetMTU("", "lo", 1500))
	if n := len(kicks); n != 0 {
		t.Errorf("%d kicks after done was closed", n)
	}
}
