package dataplane

import (
	"encoding/binary"

	"tunnel-agent/dataplane/internal/header"
)

// IPv4 fragmentation (RFC 791 section 3.2, "fragmentation procedure"), for
// a packet from the tunnel that is larger than the LAN MTU and may be
// fragmented (DF clear): the raw socket that injects it never fragments
// (IP_HDRINCL), so the engine does, as the router it stands in for would.
//
// Every fragment carries the original header with its total length,
// fragment offset, MF flag and checksum set; the first one carries all the
// options, the others only those whose copy bit (0x80 of the type) is set,
// padded with end-of-options to a multiple of 4 bytes. Fragment offsets
// count from the original's own offset, so a fragment is fragmented again
// correctly, and the last fragment keeps the original's MF flag. Each
// fragment but the last carries a multiple of 8 data bytes.
//
// Hand-written: the Go libraries that fragment (gVisor's netstack) come
// with a whole network stack.

// Options with a type and a length octet; the two single-octet ones.
const (
	ipv4OptEnd    = 0
	ipv4OptNOP    = 1
	ipv4OptCopied = 0x80
)

// fragPlan is how one IPv4 packet is cut into fragments.
type fragPlan struct {
	hdrLen  int // the first fragment's header length: the original's
	restLen int // the later fragments' header length: copied options only
	data    int // data bytes after the header
	first   int // data bytes in the first fragment (a multiple of 8)
	rest    int // data bytes in each later fragment (a multiple of 8)
	off     int // the original's fragment offset, in bytes
	mf      bool
	nOpts   int
	opts    [40]byte // the copied options, padded
}

// planFragments plans the fragmentation of pkt, a valid IPv4 packet (header
// h) trimmed to its total length, into fragments of at most mtu bytes. It
// reports false when the options are malformed (an option running past the
// header) or the MTU leaves no room for 8 data bytes after a header.
func planFragments(pkt []byte, h *header.IPv4, mtu int) (fragPlan, bool) {
	p := fragPlan{hdrLen: h.HeaderLen, data: len(pkt) - h.HeaderLen, off: int(h.FragOffset()) * 8,
		mf: h.FlagsOff&header.IPv4FlagMF != 0}
	if !p.copyOptions(pkt[header.IPv4MinHeaderLen:h.HeaderLen]) {
		return p, false
	}
	p.restLen = header.IPv4MinHeaderLen + p.nOpts
	p.first, p.rest = (mtu-p.hdrLen)&^7, (mtu-p.restLen)&^7
	return p, p.first >= 8 && p.rest >= 8
}

// copyOptions collects the options of opts with the copy bit set into
// p.opts, padded to a multiple of 4 bytes, and reports whether opts is
// well formed.
func (p *fragPlan) copyOptions(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch typ := opts[i]; typ {
		case ipv4OptEnd:
			i = len(opts)
		case ipv4OptNOP:
			i++
		default:
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				return false
			}
			n := int(opts[i+1])
			if typ&ipv4OptCopied != 0 {
				p.nOpts += copy(p.opts[p.nOpts:], opts[i:i+n])
			}
			i += n
		}
	}
	for p.nOpts%4 != 0 {
		p.opts[p.nOpts] = ipv4OptEnd
		p.nOpts++
	}
	return true
}

// count is the number of fragments.
func (p *fragPlan) count() int {
	if p.data <= p.first {
		return 1
	}
	return 1 + (p.data-p.first+p.rest-1)/p.rest
}

// maxLen is the size of the largest fragment.
func (p *fragPlan) maxLen() int { return max(p.hdrLen+p.first, p.restLen+p.rest) }

// fragment writes fragment i of pkt into dst (at least maxLen bytes) and
// returns its length.
func (p *fragPlan) fragment(dst, pkt []byte, i int) int {
	hl, start, n := p.hdrLen, 0, p.first
	if i > 0 {
		hl, start, n = p.restLen, p.first+(i-1)*p.rest, p.rest
	}
	n = min(n, p.data-start)
	last := start+n == p.data
	if i == 0 {
		copy(dst, pkt[:hl])
	} else {
		copy(dst, pkt[:header.IPv4MinHeaderLen])
		copy(dst[header.IPv4MinHeaderLen:], p.opts[:p.nOpts])
		dst[0] = 0x40 | byte(hl/4)
	}
	copy(dst[hl:], pkt[p.hdrLen+start:p.hdrLen+start+n])
	flags := uint16((p.off + start) / 8)
	if !last || p.mf {
		flags |= header.IPv4FlagMF
	}
	binary.BigEndian.PutUint16(dst[header.IPv4OffTotalLen:], uint16(hl+n))
	binary.BigEndian.PutUint16(dst[header.IPv4OffFrag:], flags)
	dst[header.IPv4OffChecksum], dst[header.IPv4OffChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(dst[header.IPv4OffChecksum:], header.Checksum(dst[:hl], 0))
	return hl + n
}
