package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// peerTable maps an address to the peer owning the longest matching prefix,
// over all peers' prefixes. It is built once in New and only read after, so
// concurrent lookups from both directions need no lock (bart allows
// concurrent readers). It holds IPv4 and IPv6 prefixes alike.
type peerTable struct {
	t bart.Table[int] // value: index into Engine.peers
}

// newPeerTable indexes the prefixes of peers. The same prefix under two
// peers is an error: the route, and the source check, would be ambiguous.
func newPeerTable(peers []PeerConfig) (*peerTable, error) {
	pt := &peerTable{}
	for i, p := range peers {
		for _, pfx := range p.Prefixes {
			if err := pt.insert(pfx, i, peers); err != nil {
				return nil, fmt.Errorf("peer %q: %w", p.Name, err)
			}
		}
	}
	return pt, nil
}

// insert adds pfx for peer i, rejecting invalid prefixes and conflicts.
func (pt *peerTable) insert(pfx netip.Prefix, i int, peers []PeerConfig) error {
	if !pfx.IsValid() {
		return fmt.Errorf("invalid prefix %v", pfx)
	}
	pfx = pfx.Masked()
	if j, ok := pt.t.Get(pfx); ok && j != i {
		return fmt.Errorf("prefix %v also belongs to peer %q", pfx, peers[j].Name)
	}
	pt.t.Insert(pfx, i)
	return nil
}

// lookup returns the peer whose prefix matches a longest.
func (pt *peerTable) lookup(a netip.Addr) (int, bool) {
	return pt.t.Lookup(a)
}

// prefixSet answers "is this address inside one of these prefixes".
type prefixSet struct {
	l bart.Lite
}

// newPrefixSet builds a set from pfxs, rejecting invalid ones.
func newPrefixSet(pfxs []netip.Prefix) (*prefixSet, error) {
	s := &prefixSet{}
	for _, pfx := range pfxs {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("invalid prefix %v", pfx)
		}
		s.l.Insert(pfx.Masked())
	}
	return s, nil
}

// contains reports whether a lies in any prefix of s.
func (s *prefixSet) contains(a netip.Addr) bool {
	return s.l.Contains(a)
}
