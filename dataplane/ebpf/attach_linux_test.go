package ebpf

import (
	"net/netip"
	"slices"
	"testing"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"tunnel-agent/internal/tchook"
)

// TestWANHooksFollowPeers: the peers' route interfaces are what
// EgressInterfaces lists; wan_ingress is hooked to one more interface and
// removed from it without touching the others' hooks, both ways of
// attaching; Hook and Unhook are idempotent.
func TestWANHooksFollowPeers(t *testing.T) {
	requireBPF(t)
	for _, mode := range []AttachMode{AttachTCX, AttachClsact} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == AttachTCX && probeTCX() != nil {
				t.Skip("no tcx links on this kernel")
			}
			second := netip.MustParsePrefix("198.18.77.254/24")
			n := newTestNet(t, nil, nil)
			wan1 := n.veth(t, "wan1", "wan1p", []netip.Prefix{second}, nil)
			d := load(t, Config{ListenPort: 5000})
			p1 := Peer{Name: "one", Endpoint: netip.MustParseAddrPort("198.51.100.1:5000"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
			p2 := Peer{Name: "two", Endpoint: netip.MustParseAddrPort("198.18.77.1:5000"), Prefixes: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}
			err := n.ns.Do(func() error {
				if err := d.SetPeers([]Peer{p1, p2}); err != nil {
					return err
				}
				got, err := d.EgressInterfaces()
				if err != nil {
					return err
				}
				if !slices.Equal(got, []string{"wan0", "wan1"}) {
					t.Errorf("EgressInterfaces = %v, want [wan0 wan1]", got)
				}
				a, err := d.Attach("lan0", "wan0", mode)
				if err != nil {
					return err
				}
				t.Cleanup(func() { a.Detach() })
				for range 2 {
					if err := a.Hook("wan1", WANProgramName); err != nil {
						return err
					}
				}
				if len(a.Hooks) != 3 || !a.Has("wan1", WANProgramName) {
					t.Errorf("hooks %+v, want wan0, lan0, wan1", a.Hooks)
				}
				if m, err := a.Missing(); err != nil || len(m) != 0 {
					t.Errorf("Missing = %+v, %v", m, err)
				}
				if !hooked(t, n, wan1.Attrs().Index, mode) {
					t.Errorf("wan_ingress not on wan1 in the kernel")
				}
				for range 2 {
					if err := a.Unhook("wan1", WANProgramName); err != nil {
						return err
					}
				}
				if a.Has("wan1", WANProgramName) || len(a.Hooks) != 2 || hooked(t, n, wan1.Attrs().Index, mode) {
					t.Errorf("after Unhook: hooks %+v, in the kernel %v", a.Hooks, hooked(t, n, wan1.Attrs().Index, mode))
				}
				if m, err := a.Missing(); err != nil || len(m) != 0 {
					t.Errorf("the other hooks after Unhook: Missing = %+v, %v", m, err)
				}
				if err := d.SetEndpoint("two", netip.MustParseAddrPort("198.51.100.2:5000")); err != nil {
					return err
				}
				got, err = d.EgressInterfaces()
				if err == nil && !slices.Equal(got, []string{"wan0"}) {
					t.Errorf("after the move: EgressInterfaces = %v, want [wan0]", got)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if mode == AttachClsact {
				if qs, err := n.ns.NL.QdiscList(wan1); err != nil || len(qs) != 1 { // the veth's noqueue only
					t.Errorf("wan1 qdiscs after Unhook: %v, %v", qs, err)
				}
			}
		})
	}
}

// hooked says whether the WAN program is on the ingress of index.
func hooked(t *testing.T, n *testNet, index int, mode AttachMode) bool {
	t.Helper()
	if mode == AttachClsact {
		f, err := tchook.Find(n.ns.NL, tchook.Hook{Index: index, Parent: FilterParent, Priority: FilterPriority, Handle: FilterHandle})
		if err != nil {
			return false
		}
		return f != nil && f.Name == FilterName(WANProgramName)
	}
	var res *link.QueryResult
	err := n.ns.Do(func() error {
		var err error
		res, err = link.QueryPrograms(link.QueryOptions{Target: index, Attach: cebpf.AttachTCXIngress})
		return err
	})
	return err == nil && len(res.Programs) > 0
}
