package dataplane

import (
	"cmp"
	"net/netip"
	"slices"
)

// Plain-mode keepalive messages. A keepalive request goes to each peer with
// a configured endpoint every Keepalive interval; the peer answers it with
// a reply. Both carry the sender's local prefixes, so that the receiver
// can tell which peer sent it even from an address it does not know (the
// receiver restarted, or the sender's NAT moved it), and learn that peer's
// endpoint as it would from data. docs/security.md discusses the design.
//
//	offset  size  field
//	0       1     0x00: IP version nibble 0, so that no IPv4 or IPv6 parser
//	              takes the message for a packet
//	1       1     type: 1 request, 2 reply
//	2       2     0: where IPv4 has its total length, which the tutorial's
//	              receiver compares with the datagram's length
//	4       4     magic and format version: 't' 'a' 'k' 1
//	8       18*n  n = 1..8 prefixes, each: family (4 or 6), prefix length,
//	              16 address bytes (IPv4: 4, then 12 zero bytes)
//
// A reply is never longer than the request it answers (it carries as many
// of the replier's prefixes as the request carried of the requester's),
// so the mechanism cannot amplify traffic towards a forged source. Agents
// before this format sent zero-length keepalives; those are still
// accepted, and never answered.
const (
	kaHeaderLen   = 8
	kaPrefixLen   = 18
	kaMaxPrefixes = 8
	kaMaxLen      = kaHeaderLen + kaMaxPrefixes*kaPrefixLen

	kaTypeRequest = 1
	kaTypeReply   = 2

	kaOffType  = 1
	kaOffMagic = 4
)

var kaMagic = [4]byte{'t', 'a', 'k', 1}

// isKeepalive reports whether a non-empty datagram is meant as a
// keepalive message (well formed or not): anything else with version
// nibble 0 is just not an IP packet.
func isKeepalive(pkt []byte) bool {
	return len(pkt) >= kaHeaderLen && pkt[0] == 0 && [4]byte(pkt[kaOffMagic:]) == kaMagic
}

// keepaliveMsg is a parsed keepalive message; it aliases the datagram.
type keepaliveMsg struct {
	typ byte
	pkt []byte
}

// parseKeepalive checks a datagram for which isKeepalive holds.
func parseKeepalive(pkt []byte) (keepaliveMsg, bool) {
	n := (len(pkt) - kaHeaderLen) / kaPrefixLen
	if n < 1 || n > kaMaxPrefixes || (len(pkt)-kaHeaderLen)%kaPrefixLen != 0 ||
		pkt[2] != 0 || pkt[3] != 0 || (pkt[kaOffType] != kaTypeRequest && pkt[kaOffType] != kaTypeReply) {
		return keepaliveMsg{}, false
	}
	m := keepaliveMsg{typ: pkt[kaOffType], pkt: pkt}
	for i := range n {
		if _, ok := m.prefix(i); !ok {
			return keepaliveMsg{}, false
		}
	}
	return m, true
}

// prefixes is the number of prefixes m carries.
func (m keepaliveMsg) prefixes() int { return (len(m.pkt) - kaHeaderLen) / kaPrefixLen }

// prefix decodes prefix i (masked); false if it is malformed.
func (m keepaliveMsg) prefix(i int) (netip.Prefix, bool) {
	b := m.pkt[kaHeaderLen+i*kaPrefixLen:][:kaPrefixLen]
	bits := int(b[1])
	switch {
	case b[0] == 4 && bits <= 32 && allZero(b[6:]):
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(b[2:])), bits).Masked(), true
	case b[0] == 6 && bits <= 128:
		return netip.PrefixFrom(netip.AddrFrom16([16]byte(b[2:])), bits).Masked(), true
	}
	return netip.Prefix{}, false
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// buildKeepalive encodes a message of type typ carrying the first
// kaMaxPrefixes of pfxs (at least one).
func buildKeepalive(typ byte, pfxs []netip.Prefix) []byte {
	pfxs = pfxs[:min(len(pfxs), kaMaxPrefixes)]
	b := make([]byte, kaHeaderLen, kaHeaderLen+len(pfxs)*kaPrefixLen)
	b[kaOffType] = typ
	copy(b[kaOffMagic:], kaMagic[:])
	for _, p := range pfxs {
		p = p.Masked()
		var e [kaPrefixLen]byte
		e[0], e[1] = 6, byte(p.Bits())
		if a := p.Addr(); a.Is4() {
			e[0] = 4
			a4 := a.As4()
			copy(e[2:], a4[:])
		} else {
			a16 := a.As16()
			copy(e[2:], a16[:])
		}
		b = append(b, e[:]...)
	}
	return b
}

// replyFor returns the prefix of reply (a full reply message) that is no
// longer than the request it answers.
func replyFor(reply []byte, request int) []byte {
	return reply[:min(len(reply), request)]
}

// Attribution: which peer does an announced prefix P belong to?
//
//  1. The peer that has P itself among its prefixes.
//  2. Otherwise the one peer that has prefixes inside P (the receiver may
//     know the sender's site by a narrower prefix than the site's LAN: the
//     tutorial's server knows the client as the Raspberry Pi's /32 while
//     the client's LAN is a /24). P must then be at least as long as
//     minCoverBits, so that a very wide announcement (0.0.0.0/0 on a
//     server with one peer) names nobody; with prefixes of several peers
//     inside P, it names nobody either.
//  3. Otherwise the peer whose prefix contains P (longest match), as data
//     from an address of P would be attributed.
//
// A message names the peer its prefixes name; prefixes that name nobody
// are ignored, and prefixes naming different peers make it name nobody.

// minCoverBits is the shortest announced prefix that may name a peer by
// prefixes inside it (rule 2): a /16 IPv4 LAN, a /48 IPv6 site.
func minCoverBits(a netip.Addr) int {
	if a.Is4() {
		return 16
	}
	return 48
}

// coverIndex holds every peer prefix sorted by address then length, per
// family, for rule 2: the prefixes inside P are a contiguous run starting
// at P. It is built only when some peer learns its endpoint: keepalives
// from known endpoints are attributed by address.
type coverIndex struct {
	v4 coverList[uint32]
	v6 coverList[u128]
}

// u128 is an IPv6 address as two integers.
type u128 struct{ hi, lo uint64 }

func compareU128(a, b u128) int { return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo)) }

// coverList is one family's sorted prefixes. An IPv4 entry takes 16
// bytes, an IPv6 one 32.
type coverList[A any] struct {
	e       []coverEntry[A]
	compare func(a, b A) int
}

type coverEntry[A any] struct {
	addr  A // masked
	bits  uint8
	owner int32 // peer index
	next  int32 // index of the first later entry of another owner; len(e) if none
}

// newCoverIndex indexes the (valid) prefixes of peers.
func newCoverIndex(peers []PeerConfig) coverIndex {
	ix := coverIndex{v4: coverList[uint32]{compare: cmp.Compare[uint32]}, v6: coverList[u128]{compare: compareU128}}
	n4, n6 := 0, 0
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	ix.v4.e, ix.v6.e = make([]coverEntry[uint32], 0, n4), make([]coverEntry[u128], 0, n6)
	for i, p := range peers {
		for _, pfx := range p.Prefixes {
			pfx = pfx.Masked()
			if a := pfx.Addr(); a.Is4() {
				ix.v4.e = append(ix.v4.e, coverEntry[uint32]{addr: addr4(a), bits: uint8(pfx.Bits()), owner: int32(i)})
			} else {
				hi, lo := addr6(a)
				ix.v6.e = append(ix.v6.e, coverEntry[u128]{addr: u128{hi, lo}, bits: uint8(pfx.Bits()), owner: int32(i)})
			}
		}
	}
	ix.v4.sort()
	ix.v6.sort()
	return ix
}

// order compares entries by address, then length.
func (l *coverList[A]) order(x coverEntry[A], addr A, bits uint8) int {
	return cmp.Or(l.compare(x.addr, addr), cmp.Compare(x.bits, bits))
}

// sort orders the entries and links each to the next of another owner.
func (l *coverList[A]) sort() {
	slices.SortFunc(l.e, func(x, y coverEntry[A]) int { return l.order(x, y.addr, y.bits) })
	next := int32(len(l.e))
	for i := len(l.e) - 1; i >= 0; i-- {
		if i+1 < len(l.e) && l.e[i+1].owner != l.e[i].owner {
			next = int32(i + 1)
		}
		l.e[i].next = next
	}
}

// inside returns the one peer owning the prefixes inside the prefix
// addr/bits whose last address is end (the prefix itself included), found
// false when there are none, and unique false when several peers own some.
func (l *coverList[A]) inside(addr A, bits uint8, end A) (owner int, found, unique bool) {
	i, _ := slices.BinarySearchFunc(l.e, 0, func(x coverEntry[A], _ int) int { return l.order(x, addr, bits) })
	if i == len(l.e) || l.compare(l.e[i].addr, end) > 0 {
		return 0, false, false
	}
	if j := l.e[i].next; int(j) < len(l.e) && l.compare(l.e[j].addr, end) <= 0 {
		return 0, true, false
	}
	return int(l.e[i].owner), true, true
}

// inside is coverList.inside for a masked prefix of either family.
func (ix *coverIndex) inside(p netip.Prefix) (owner int, found, unique bool) {
	bits := uint8(p.Bits())
	if a := p.Addr(); a.Is4() {
		x := addr4(a)
		return ix.v4.inside(x, bits, x|^uint32(0)>>bits)
	}
	hi, lo := addr6(p.Addr())
	end := u128{hi, lo | ^uint64(0)}
	if bits <= 64 {
		end.hi |= ^uint64(0) >> bits
	} else {
		end.lo = lo | ^uint64(0)>>(bits-64)
	}
	return ix.v6.inside(u128{hi, lo}, bits, end)
}

// keepalivePeer returns the peer m's prefixes name (see above).
func (e *Engine) keepalivePeer(m keepaliveMsg) (*peer, bool) {
	found := -1
	for i := range m.prefixes() {
		p, _ := m.prefix(i)
		pi, ok := e.prefixOwner(p)
		switch {
		case !ok:
		case found >= 0 && pi != found:
			return nil, false
		default:
			found = pi
		}
	}
	if found < 0 {
		return nil, false
	}
	return &e.r.peers[found], true
}

// prefixOwner applies rules 1 to 3 to one announced prefix.
func (e *Engine) prefixOwner(p netip.Prefix) (int, bool) {
	if pi, ok := e.r.routes.get(p); ok {
		return pi, true
	}
	if pi, found, unique := e.ka.cover.inside(p); found {
		return pi, unique && p.Bits() >= minCoverBits(p.Addr())
	}
	return e.r.routes.lookup(p.Addr())
}

// keepaliveState is what the engine needs for keepalive messages, built
// from a configuration.
type keepaliveState struct {
	request, reply []byte // ours, with our first kaMaxPrefixes local prefixes
	cover          coverIndex
}

func newKeepaliveState(cfg Config) keepaliveState {
	ka := keepaliveState{
		request: buildKeepalive(kaTypeRequest, cfg.LocalPrefixes),
		reply:   buildKeepalive(kaTypeReply, cfg.LocalPrefixes),
	}
	for _, p := range cfg.Peers {
		if p.Endpoint == (netip.AddrPort{}) {
			ka.cover = newCoverIndex(cfg.Peers)
			break
		}
	}
	return ka
}

// keepaliveType returns the type of an outgoing datagram that is a
// keepalive (zero-length: the old format, a request), or 0 for a packet.
func keepaliveType(b []byte) byte {
	switch {
	case len(b) == 0:
		return kaTypeRequest
	case b[0]>>4 == 0 && len(b) > kaOffType:
		return b[kaOffType]
	}
	return 0
}
