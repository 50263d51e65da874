package probe

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netns"
)

// PingEventually pings dst (IPv4 or IPv6) from inside namespace ns, one
// request at a time with a 300 ms timeout, until one is answered or within
// has passed. It is how tests wait for reachability: a first request may
// be lost to neighbour resolution, a tunnel's first contact or a loaded
// machine, and one lost ping says nothing about a path that works.
func PingEventually(ns netns.NsHandle, dst netip.Addr, within time.Duration) (PingResult, error) {
	ping := Ping
	if dst.Is6() && !dst.Is4In6() {
		ping = Ping6
	}
	deadline := time.Now().Add(within)
	for {
		r, err := ping(ns, dst, 1, 0, 300*time.Millisecond, 0)
		switch {
		case err != nil: // bad options or no socket: retrying will not help
			return r, err
		case r.Received > 0:
			return r, nil
		case time.Now().After(deadline):
			return r, fmt.Errorf("ping %s: no reply within %v", dst, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
