package dataplane

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/gaissmai/bart"
)

// lookupByHash selects the lookup structure, at compile time. On 64-bit
// platforms bart's tables answer in one trie walk without allocating. On
// 32-bit ones (the Raspberry Pi 2 of the tutorial: linux/arm) every bart
// lookup allocates: bart walks the address through netip.Addr.AsSlice,
// which the compiler does not inline there (its 64-bit arithmetic costs
// too much), so the slice's array escapes to the heap, 1 to 3 times per
// packet. There the tables are prefixHash instead, which allocates
// nothing. Both are built from the same prefixes and give the same
// answers (TestPrefixHashMatchesBart).
const lookupByHash = strconv.IntSize == 32

// peerTable maps an address to the peer owning the longest matching prefix,
// over all peers' prefixes. It is built once in New and only read after, so
// concurrent lookups from both directions need no lock (bart and Go maps
// allow concurrent readers). It holds IPv4 and IPv6 prefixes alike.
type peerTable struct {
	t bart.Table[int] // value: index into Engine.peers; unused when lookupByHash
	h prefixHash      // the same, used when lookupByHash
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
	if j, ok := pt.get(pfx); ok && j != i {
		return fmt.Errorf("prefix %v also belongs to peer %q", pfx, peers[j].Name)
	}
	if lookupByHash {
		pt.h.insert(pfx, i)
	} else {
		pt.t.Insert(pfx, i)
	}
	return nil
}

// get returns the peer of exactly pfx (masked).
func (pt *peerTable) get(pfx netip.Prefix) (int, bool) {
	if lookupByHash {
		return pt.h.get(pfx)
	}
	return pt.t.Get(pfx)
}

// lookup returns the peer whose prefix matches a longest.
func (pt *peerTable) lookup(a netip.Addr) (int, bool) {
	if lookupByHash {
		return pt.h.lookup(a)
	}
	return pt.t.Lookup(a)
}

// size is the number of distinct prefixes in the table.
func (pt *peerTable) size() int {
	if lookupByHash {
		return len(pt.h.m4) + len(pt.h.m6)
	}
	return pt.t.Size()
}

// prefixSet answers "is this address inside one of these prefixes".
type prefixSet struct {
	l bart.Lite  // unused when lookupByHash
	h prefixHash // used when lookupByHash (values unused)
}

// newPrefixSet builds a set from pfxs, rejecting invalid ones.
func newPrefixSet(pfxs []netip.Prefix) (*prefixSet, error) {
	s := &prefixSet{}
	for _, pfx := range pfxs {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("invalid prefix %v", pfx)
		}
		if lookupByHash {
			s.h.insert(pfx.Masked(), 0)
		} else {
			s.l.Insert(pfx.Masked())
		}
	}
	return s, nil
}

// contains reports whether a lies in any prefix of s.
func (s *prefixSet) contains(a netip.Addr) bool {
	if lookupByHash {
		_, ok := s.h.lookup(a)
		return ok
	}
	return s.l.Contains(a)
}
