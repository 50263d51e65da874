package ethfeat

import (
	"errors"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"tunnel-agent/internal/nstest"
)

// openIn opens a Socket inside a new throwaway namespace with a veth pair
// va/vb.
func openIn(t *testing.T) *Socket {
	ns := nstest.New(t, "taeth")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb"}
	if err := ns.NL.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	var s *Socket
	if err := ns.Do(func() (err error) { s, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFeaturesAndChange(t *testing.T) {
	s := openIn(t)
	f, err := s.Features("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo := f["loopback"]; !lo.Active || lo.Available {
		t.Fatalf("lo loopback = %+v, want active and fixed", lo)
	}
	for _, on := range []bool{false, true} {
		if err := s.Change("va", map[string]bool{"rx-checksum": on}); err != nil {
			t.Fatal(err)
		}
		f, err := s.Features("va")
		if err != nil {
			t.Fatal(err)
		}
		if got := f["rx-checksum"]; got.Active != on || got.Requested != on || got.NeverChanged {
			t.Errorf("after rx-checksum=%v: %+v", on, got)
		}
	}
}

func TestErrors(t *testing.T) {
	s := openIn(t)
	if err := s.Change("va", map[string]bool{"no-such-feature": true}); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("unknown feature: err = %v, want ErrUnknownFeature", err)
	}
	if _, err := s.Features("nosuchlink0"); err == nil {
		t.Error("features of a missing link: no error")
	}
	if _, err := s.Features("a-name-longer-than-ifnamsiz"); err == nil {
		t.Error("features of a too long name: no error")
	}
}

// TestStackMoves reads features from goroutines whose stacks grow and
// shrink between and around the calls: the safchain/ethtool code this
// replaces read all-false features when the stack moved under its
// uintptr. lo's fixed "loopback" must read active every time.
func TestStackMoves(t *testing.T) {
	s := openIn(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if !deep(s, (g*7+i)%64) {
					t.Errorf("goroutine %d, call %d: lo loopback not active", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// deep recurses n frames with a 1 KiB frame each (growing the stack),
// then reads lo's features.
func deep(s *Socket, n int) bool {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n > 0 {
		return deep(s, n-1) && pad[n%len(pad)] == byte(n)
	}
	f, err := s.Features("lo")
	return err == nil && f["loopback"].Active
}
