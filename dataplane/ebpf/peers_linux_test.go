package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"tunnel-agent/internal/tchook"
)

// TestSetPeersInPlace: peers keep their ids, and only what changed is
// rewritten; prefixes and endpoints move between peers without a moment
// in which the maps lose them.
func TestSetPeersInPlace(t *testing.T) {
	d := load(t, Config{ListenPort: 5000})
	src := netip.MustParseAddr("198.18.0.1")
	a := Peer{Name: "a", Endpoint: netip.MustParseAddrPort("198.18.0.2:5000"), Prefixes: mustPrefixes("10.1.0.0/16"), Source: src}
	b := Peer{Name: "b", Endpoint: netip.MustParseAddrPort("198.18.0.3:5000"), Prefixes: mustPrefixes("10.2.0.0/16", "fd00:2::/48"), Source: src}
	if err := d.SetPeers([]Peer{a, b}); err != nil {
		t.Fatal(err)
	}
	idA, idB := d.peers["a"].id, d.peers["b"].id
	var entryA tunnelPeer
	if err := d.objs.Peers.Lookup(idA, &entryA); err != nil {
		t.Fatal(err)
	}

	// b moves, gives 10.2.0.0/16 to a; a is unchanged otherwise.
	a.Prefixes = mustPrefixes("10.1.0.0/16", "10.2.0.0/16")
	b.Prefixes = mustPrefixes("fd00:2::/48")
	b.Endpoint = netip.MustParseAddrPort("198.18.0.4:6000")
	if err := d.SetPeers([]Peer{b, a}); err != nil {
		t.Fatal(err)
	}
	if d.peers["a"].id != idA || d.peers["b"].id != idB {
		t.Fatal("peer ids changed")
	}
	checkRoute(t, d, "10.2.0.0/16", idA)
	checkRoute(t, d, "fd00:2::/48", idB)
	checkEndpoint(t, d, "198.18.0.4:6000", idB, true)
	checkEndpoint(t, d, "198.18.0.3:5000", 0, false)

	// A learned endpoint for b, then b removed: its routes, key and
	// entry go; a's stay.
	if err := d.SetEndpoint("b", netip.MustParseAddrPort("198.18.0.5:7000")); err != nil {
		t.Fatal(err)
	}
	checkEndpoint(t, d, "198.18.0.5:7000", idB, true)
	checkEndpoint(t, d, "198.18.0.4:6000", 0, false)
	if err := d.SetPeers([]Peer{a}); err != nil {
		t.Fatal(err)
	}
	checkEndpoint(t, d, "198.18.0.5:7000", 0, false)
	checkRoute(t, d, "10.2.0.0/16", idA)
	var e tunnelPeer
	if err := d.objs.Peers.Lookup(idB, &e); !errors.Is(err, cebpf.ErrKeyNotExist) {
		t.Fatalf("b's entry still there: %v", err)
	}
	if err := d.objs.Peers.Lookup(idA, &e); err != nil || e != entryA {
		t.Fatalf("a's entry changed: %+v, %v", e, err)
	}

	// Conflicts are refused before anything is written.
	bad := []Peer{a, {Name: "c", Prefixes: mustPrefixes("10.1.0.0/16")}}
	if err := d.SetPeers(bad); err == nil {
		t.Fatal("a prefix of two peers was accepted")
	}
}

func checkRoute(t *testing.T, d *Dataplane, pfx string, want uint32) {
	t.Helper()
	p := netip.MustParsePrefix(pfx)
	var id uint32
	var err error
	if p.Addr().Is4() {
		err = d.objs.Routes4.Lookup(lpm4(p), &id)
	} else {
		err = d.objs.Routes6.Lookup(lpm6(p), &id)
	}
	if err != nil || id != want {
		t.Fatalf("route %s: peer %d, %v; want %d", pfx, id, err, want)
	}
}

func checkEndpoint(t *testing.T, d *Dataplane, ep string, want uint32, present bool) {
	t.Helper()
	var id uint32
	err := d.objs.Endpoints.Lookup(endpointKey(netip.MustParseAddrPort(ep)), &id)
	if present && (err != nil || id != want) {
		t.Fatalf("endpoint %s: peer %d, %v; want %d", ep, id, err, want)
	}
	if !present && !errors.Is(err, cebpf.ErrKeyNotExist) {
		t.Fatalf("endpoint %s still there (%d, %v)", ep, id, err)
	}
}

// TestClsactLeavesExistingQdisc: with a clsact qdisc already on the
// interfaces (someone else's), the fallback adds only its filters, and
// Detach removes only them. Without one, it creates the qdisc and removes
// it again. RemoveHooks undoes a journaled attachment the same way.
func TestClsactLeavesExistingQdisc(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, nil, nil)
	d := load(t, Config{ListenPort: 5000})
	nl := n.ns.NL
	if _, err := tchook.EnsureClsact(nl, n.wan.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	var a *Attachment
	err := n.ns.Do(func() error {
		var err error
		a, err = d.Attach("lan0", "wan0", AttachClsact)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	for _, h := range a.Hooks {
		created[h.Interface] = h.QdiscCreated
		if f, err := tchook.Find(nl, tcHook(h)); err != nil || f == nil || f.Name != filterPrefix+h.Program {
			t.Fatalf("%s: filter %+v, %v", h.Interface, f, err)
		}
	}
	if created["wan0"] || !created["lan0"] {
		t.Fatalf("qdisc created: %v, want lan0 only", created)
	}
	hooks := append([]Hook(nil), a.Hooks...)
	if err := RemoveHooks(nl, hooks); err != nil { // as `down` after a crash
		t.Fatal(err)
	}
	if err := a.Detach(); err != nil { // already gone: fine
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{n.lan, n.wan} {
		qs, err := nl.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		has := false
		for _, q := range qs {
			has = has || q.Type() == "clsact"
		}
		if has != (l.Attrs().Name == "wan0") {
			t.Errorf("%s: clsact present %v after detach", l.Attrs().Name, has)
		}
		if left, err := tchook.FiltersLeft(nl, l.Attrs().Index); err != nil || left {
			t.Errorf("%s: filters left %v, %v", l.Attrs().Name, left, err)
		}
	}
}

// TestHubScalePeers: a hub's thousands of peers, each with an endpoint
// and two prefixes, fit maps sized for them; writing them again (the
// agent's route refresh) rewrites nothing that did not change. The times
// are logged, not asserted.
func TestHubScalePeers(t *testing.T) {
	requireBPF(t)
	const n = 4000
	n0 := newTestNet(t, nil, nil)
	d := load(t, Config{ListenPort: 5000, MaxPeers: n + n/4 + 16, MaxPrefixes: 2*n + 16})
	peers := make([]Peer, n)
	for i := range peers {
		peers[i] = Peer{Name: fmt.Sprint("site", i),
			Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%250)}), uint16(10000+i)),
			Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
				netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 0}), 24)}}
	}
	for _, what := range []string{"first write", "refresh, nothing changed"} {
		start := time.Now()
		if err := n0.ns.Do(func() error { return d.SetPeers(peers) }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%d peers, %s: %v", n, what, time.Since(start).Round(time.Millisecond))
	}
	st, err := d.Stats()
	if err != nil || len(st.Peers) != n {
		t.Fatalf("stats: %d peers, %v", len(st.Peers), err)
	}
}
