package config

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// prefixSet indexes prefixes by the position they were given at, so that
// the overlap checks of validation look up each prefix in a trie instead
// of comparing every pair: a hub's 100,000 prefixes are checked in well
// under a second.
type prefixSet struct{ t bart.Table[[]int] }

// add records prefix p (masked) at position i.
func (s *prefixSet) add(p netip.Prefix, i int) {
	s.t.Modify(p, func(v []int, _ bool) ([]int, bool) { return append(v, i), false })
}

// overlapping returns the smallest position whose prefix overlaps p (is p,
// contains it or is inside it) and for which keep is true; -1 if none.
func (s *prefixSet) overlapping(p netip.Prefix, keep func(i int) bool) int {
	best := -1
	visit := func(is []int) {
		for _, i := range is {
			if (best < 0 || i < best) && keep(i) {
				best = i
			}
		}
	}
	for _, is := range s.t.Supernets(p) { // p itself included
		visit(is)
	}
	for q, is := range s.t.Subnets(p) {
		if q != p.Masked() {
			visit(is)
		}
	}
	return best
}

// contained returns the positions of the prefixes inside p (p included),
// in order.
func (s *prefixSet) contained(p netip.Prefix) []int {
	var out []int
	for _, is := range s.t.Subnets(p) {
		out = append(out, is...)
	}
	slices.Sort(out)
	return out
}
