package dataplane

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// prefixHash is a longest-prefix match table that does not allocate on
// any platform: one Go map per address family keyed by (prefix length,
// masked address), and the distinct prefix lengths present, longest
// first. A lookup masks the address to each of those lengths in turn and
// returns the first exact match, which is the longest. Its cost grows
// with the number of distinct lengths (one /24 per site: one probe), not
// with the number of prefixes; Go maps hash with a per-process random
// seed, so chosen addresses cannot make probes collide.
//
// It is the table behind peerTable and prefixSet on 32-bit platforms
// only (see lookupByHash): on 64-bit ones bart is faster for tables with
// many distinct lengths and smaller at hub scale. Built once, then only
// read: concurrent lookups are safe.
type prefixHash struct {
	lens4, lens6 []uint8 // distinct prefix lengths, longest first
	m4           map[uint64]int
	m6           map[prefixKey6]int
}

// prefixKey6 is a masked IPv6 prefix as a map key.
type prefixKey6 struct {
	hi, lo uint64
	bits   uint8
}

// key4 is the map key of an IPv4 address masked to bits.
func key4(a uint32, bits uint8) uint64 {
	return uint64(bits)<<32 | uint64(a&^(^uint32(0)>>bits))
}

// key6 is the map key of an IPv6 address (hi, lo) masked to bits.
func key6(hi, lo uint64, bits uint8) prefixKey6 {
	if bits <= 64 {
		return prefixKey6{hi: hi &^ (^uint64(0) >> bits), bits: bits}
	}
	return prefixKey6{hi: hi, lo: lo &^ (^uint64(0) >> (bits - 64)), bits: bits}
}

// addr4 and addr6 are a's bits as integers.
func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr6(a netip.Addr) (uint64, uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// insert adds (or replaces) pfx, which must be valid, with value v.
func (h *prefixHash) insert(pfx netip.Prefix, v int) {
	bits := uint8(pfx.Bits())
	if a := pfx.Addr(); a.Is4() {
		if h.m4 == nil {
			h.m4 = make(map[uint64]int)
		}
		h.m4[key4(addr4(a), bits)] = v
		h.lens4 = addLen(h.lens4, bits)
	} else {
		if h.m6 == nil {
			h.m6 = make(map[prefixKey6]int)
		}
		hi, lo := addr6(a)
		h.m6[key6(hi, lo, bits)] = v
		h.lens6 = addLen(h.lens6, bits)
	}
}

// addLen inserts bits into lens, kept sorted longest first, once.
func addLen(lens []uint8, bits uint8) []uint8 {
	i, found := slices.BinarySearchFunc(lens, bits, func(l, b uint8) int { return int(b) - int(l) })
	if found {
		return lens
	}
	return slices.Insert(lens, i, bits)
}

// get returns the value of exactly pfx (valid, any host bits).
func (h *prefixHash) get(pfx netip.Prefix) (int, bool) {
	bits := uint8(pfx.Bits())
	if a := pfx.Addr(); a.Is4() {
		v, ok := h.m4[key4(addr4(a), bits)]
		return v, ok
	}
	hi, lo := addr6(pfx.Addr())
	v, ok := h.m6[key6(hi, lo, bits)]
	return v, ok
}

// lookup returns the value of the longest prefix containing a. An IPv6
// zone is ignored; an IPv4-mapped IPv6 address is IPv6, as in bart.
func (h *prefixHash) lookup(a netip.Addr) (int, bool) {
	switch {
	case a.Is4():
		x := addr4(a)
		for _, bits := range h.lens4 {
			if v, ok := h.m4[key4(x, bits)]; ok {
				return v, true
			}
		}
	case a.Is6():
		hi, lo := addr6(a)
		for _, bits := range h.lens6 {
			if v, ok := h.m6[key6(hi, lo, bits)]; ok {
				return v, true
			}
		}
	}
	return 0, false
}
