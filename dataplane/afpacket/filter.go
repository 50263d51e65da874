package afpacket

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"

	"tunnel-agent/dataplane/internal/header"
)

// Classic BPF filter for the capture socket.
//
// The program is run by the kernel on every frame the capture socket is
// bound to, before anything is queued to the socket. The packet data the
// filter sees starts at the link-layer header on a SOCK_RAW socket and at
// the network header on a SOCK_DGRAM one (captureLink); the program is
// built for that base, the length of the link-layer header (0 below).
//
// Layout:
//
//	ld   #pkttype              ; ancillary load, kernel only
//	jeq  #PACKET_HOST, 1, 0
//	ret  #0                    ; not addressed to this host: drop
//	ld   #proto                ; ancillary: the frame's EtherType
//	jeq  #ETH_P_IP, 2, 0       ; (the socket is bound to ETH_P_ALL)
//	jeq  #ETH_P_IPV6, 1, 0
//	ret  #0                    ; ARP, LLDP, ...: drop
//	--- match program (runnable in golang.org/x/net/bpf's VM) ---
//	ld   #len
//	jge  #20, 1, 0
//	ret  #keep                 ; a runt: the engine counts it (too_short)
//	ldb  [0]
//	rsh  #4                    ; IP version nibble
//	jeq  #4, 0, 1
//	ja   v4
//	jeq  #6, 0, 1
//	ja   v6
//	ret  #keep                 ; another version: the engine counts it (not_ipv4)
//	v4:                        ; (ret #0 without IPv4 prefixes)
//	ld   [16]                  ; IPv4 destination address
//	tax
//	per prefix length L (longest first):
//	    txa ; and #mask(L)     ; (no "and" for /32)
//	    jeq #net1, ->keep ; jeq #net2, ->keep ; ...
//	    (at most captureChunk compares, each chunk followed by "ret #keep"
//	     so that conditional jumps stay within their 8-bit range)
//	ret  #0
//	v6:                        ; (ret #0 without IPv6 prefixes)
//	ld   #len
//	jge  #40, 1, 0
//	ret  #keep                 ; shorter than the fixed header: counted
//	                           ; per prefix, longest first:
//	    ld [24+4i] ; and #mask ; jeq #word, 0, ->next prefix   (i < ceil(L/32))
//	    ret #keep
//	ret  #0
//
// The IPv6 destination is at offset 24 of the fixed header whatever
// extension headers follow, so they cannot make the filter miss a packet.
//
// Runts and IP versions other than 4 and 6 are kept (with an EtherType of
// IPv4 or IPv6 and addressed to this host), whatever their destination, so
// that the engine counts what it drops: the filter can only drop silently.
// An empty prefix list still accepts nothing: the capture is idle.

const (
	// captureKeep is the filter's "accept" value: the number of bytes to
	// keep. It is larger than any packet so that the filter never trims
	// (a trimmed packet would look complete to the reader). MaxInt32 rather
	// than MaxUint32 keeps it positive in the VM's int on 32-bit platforms.
	captureKeep = math.MaxInt32

	// captureChunk bounds the compares sharing one "ret #keep" so that the
	// conditional jump offsets (uint8) never overflow.
	captureChunk = 128

	// bpfMaxInstructions is the kernel's BPF_MAXINSNS for classic BPF.
	bpfMaxInstructions = 4096

	// linuxPacketHost is PACKET_HOST from <linux/if_packet.h>: the frame was
	// addressed to this host (as opposed to broadcast, multicast, another
	// host, or outgoing).
	linuxPacketHost = 0

	// EtherTypes, as the ancillary protocol load returns them (host order).
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// Filter returns the assembled classic BPF program for a capture
// socket: it accepts only frames addressed to this host (pkttype ==
// PACKET_HOST, an ancillary load that only the Linux kernel implements)
// that are IPv4 or IPv6 packets (by EtherType and version) whose
// destination address lies in one of prefixes. An empty prefix list yields
// a program that accepts nothing.
//
// A list too long for the kernel's limit of 4096 instructions (a hub with
// thousands of sites) is widened: prefixes longer than a bound are cut to
// it, the bound lowered until the program fits. The filter then keeps a
// superset of the packets, which costs only a few wasted copies: the
// engine's exact longest-prefix match drops the rest as no_route, and the
// capture is a tap (the kernel handles the original packet regardless).
func Filter(prefixes []netip.Prefix) ([]bpf.RawInstruction, error) {
	return captureFilter(prefixes, 0)
}

// captureFilter is Filter for a socket whose packet data starts
// base bytes before the IP header (the link-layer header of a SOCK_RAW
// socket).
func captureFilter(prefixes []netip.Prefix, base int) ([]bpf.RawInstruction, error) {
	prog, err := captureProgram(prefixes, base)
	for l4, l6 := 31, 124; err == nil && len(prog) > bpfMaxInstructions; l4, l6 = l4-1, l6-4 {
		prog, err = captureProgram(widen(prefixes, max(l4, 0), max(l6, 0)), base)
	}
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capture filter: %w", err)
	}
	return raw, nil
}

// widen returns prefixes with every IPv4 prefix longer than bits4 cut to
// bits4, and every IPv6 one longer than bits6 to bits6.
func widen(prefixes []netip.Prefix, bits4, bits6 int) []netip.Prefix {
	out := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		b := bits6
		if p.Addr().Is4() {
			b = bits4
		}
		out[i] = p
		if p.IsValid() && p.Bits() > b {
			out[i] = netip.PrefixFrom(p.Addr(), b).Masked()
		}
	}
	return out
}

// captureProgram is the whole filter program for prefixes and base,
// unassembled and unchecked against the kernel's length limit.
func captureProgram(prefixes []netip.Prefix, base int) ([]bpf.Instruction, error) {
	match, err := captureMatchProgramAt(prefixes, base)
	if err != nil {
		return nil, err
	}
	prog := make([]bpf.Instruction, 0, 7+len(match))
	prog = append(prog,
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: linuxPacketHost, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.LoadExtension{Num: bpf.ExtProto},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv6, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	)
	return append(prog, match...), nil
}

// captureMatchProgram is the part of the capture filter that looks only at
// packet bytes and length (no other ancillary loads), so it can run in
// bpf.NewVM in tests; the IP header at offset 0.
func captureMatchProgram(prefixes []netip.Prefix) ([]bpf.Instruction, error) {
	return captureMatchProgramAt(prefixes, 0)
}

// captureMatchProgramAt is captureMatchProgram with the IP header at
// offset base.
func captureMatchProgramAt(prefixes []netip.Prefix, base int) ([]bpf.Instruction, error) {
	var v4, v6 []netip.Prefix
	for _, p := range prefixes {
		switch {
		case !p.IsValid():
			return nil, fmt.Errorf("capture filter: invalid prefix %v", p)
		case p.Addr().Is4():
			v4 = append(v4, p.Masked())
		case p.Addr().Is4In6() || p.Addr().Zone() != "":
			return nil, fmt.Errorf("capture filter: prefix %v: %w", p, errBadIPv6Prefix)
		default:
			v6 = append(v6, p.Masked())
		}
	}
	if len(v4)+len(v6) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: 0}}, nil
	}
	blocks := [][]bpf.Instruction{{bpf.RetConstant{Val: 0}}, {bpf.RetConstant{Val: 0}}} // IPv4, IPv6
	if len(v4) > 0 {
		blocks[0] = ipv4DstBlock(minimalPrefixes(v4))
	}
	if len(v6) > 0 {
		blocks[1] = append(keepShorter(header.IPv6HeaderLen), ipv6DstBlock(minimalPrefixes(v6))...)
	}
	prog := append(keepShorter(header.IPv4MinHeaderLen), versionDispatch([]uint32{4, 6}, blocks)...)
	return rebase(prog, base), nil
}

// keepShorter returns the instructions that keep a packet shorter than n
// bytes (so that the engine counts it) and fall through otherwise.
func keepShorter(n uint32) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: n, SkipTrue: 1},
		bpf.RetConstant{Val: captureKeep},
	}
}

// rebase moves prog's view of the packet base bytes on: every absolute
// load, and every length compared right after a length load.
func rebase(prog []bpf.Instruction, base int) []bpf.Instruction {
	for i, ins := range prog {
		switch ins := ins.(type) {
		case bpf.LoadAbsolute:
			ins.Off += uint32(base)
			prog[i] = ins
		case bpf.JumpIf:
			if i > 0 && prog[i-1] == (bpf.LoadExtension{Num: bpf.ExtLen}) {
				ins.Val += uint32(base)
				prog[i] = ins
			}
		}
	}
	return prog
}

// versionDispatch loads the IP version nibble and jumps to the block of
// that family: "jeq #ver, 0, 1; ja block" per family, so that blocks of
// any length can follow (ja has a 32-bit offset). A packet of another
// version is kept, for the engine to count.
func versionDispatch(versions []uint32, blocks [][]bpf.Instruction) []bpf.Instruction {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
	}
	skip := 0 // instructions between the current "ja" and the block it targets
	for i := range blocks {
		skip += 2*(len(blocks)-1-i) + 1 // rest of the dispatch, then "ret #0"
		for j := range i {
			skip += len(blocks[j])
		}
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: versions[i], SkipFalse: 1},
			bpf.Jump{Skip: uint32(skip)})
		skip = 0
	}
	prog = append(prog, bpf.RetConstant{Val: captureKeep})
	for _, b := range blocks {
		prog = append(prog, b...)
	}
	return prog
}

var errBadIPv6Prefix = errors.New("IPv4-mapped and zoned IPv6 prefixes cannot be matched")

// ipv6DstBlock matches the IPv6 destination address (offset 24) against
// prefixes, which must be masked, IPv6 and free of duplicates: per prefix,
// longest first, one load and compare per 32-bit word the prefix covers
// (at most 12 instructions plus "ret #keep", so every jump fits in 8 bits).
func ipv6DstBlock(prefixes []netip.Prefix) []bpf.Instruction {
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := cmp.Compare(b.Bits(), a.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})
	var prog []bpf.Instruction // (a packet shorter than the fixed header was kept)
	for _, p := range prefixes {
		prog = append(prog, ipv6PrefixMatch(p)...)
	}
	return append(prog, bpf.RetConstant{Val: 0})
}

// ipv6PrefixMatch returns the instructions that return #keep when the
// destination lies in p and fall through to the next prefix otherwise.
// /0 matches everything.
func ipv6PrefixMatch(p netip.Prefix) []bpf.Instruction {
	a := p.Addr().As16()
	var prog []bpf.Instruction
	for w := range (p.Bits() + 31) / 32 {
		prog = append(prog, bpf.LoadAbsolute{Off: uint32(header.IPv6OffDst + 4*w), Size: 4})
		val := uint32(a[4*w])<<24 | uint32(a[4*w+1])<<16 | uint32(a[4*w+2])<<8 | uint32(a[4*w+3])
		if bits := p.Bits() - 32*w; bits < 32 {
			mask := ^uint32(0) << (32 - bits)
			prog = append(prog, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
			val &= mask
		}
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: val}) // SkipFalse set below
	}
	prog = append(prog, bpf.RetConstant{Val: captureKeep})
	for i, ins := range prog {
		if j, ok := ins.(bpf.JumpIf); ok {
			j.SkipFalse = uint8(len(prog) - 1 - i) // past this prefix's "ret #keep"
			prog[i] = j
		}
	}
	return prog
}

// ipv4DstBlock matches the IPv4 destination address (offset 16) against
// prefixes, which must be masked, IPv4 and free of duplicates.
func ipv4DstBlock(prefixes []netip.Prefix) []bpf.Instruction {
	for _, p := range prefixes {
		if p.Bits() == 0 {
			// Still load the address: a packet too short to hold an IPv4
			// header is dropped, as with any other prefix list.
			return []bpf.Instruction{
				bpf.LoadAbsolute{Off: 16, Size: 4},
				bpf.RetConstant{Val: captureKeep},
			}
		}
	}
	// Group by prefix length, longest first (more specific, typically the
	// interesting host routes, are tested first).
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := cmp.Compare(b.Bits(), a.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})

	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 16, Size: 4},
		bpf.TAX{},
	}
	for i := 0; i < len(prefixes); {
		bits := prefixes[i].Bits()
		j := i
		for j < len(prefixes) && prefixes[j].Bits() == bits {
			j++
		}
		group := prefixes[i:j]
		i = j
		for len(group) > 0 {
			chunk := group[:min(len(group), captureChunk)]
			group = group[len(chunk):]
			prog = append(prog, bpf.TXA{})
			if bits < 32 {
				prog = append(prog, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ^uint32(0) << (32 - bits)})
			}
			for k, p := range chunk {
				a := p.Addr().As4()
				net := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
				jeq := bpf.JumpIf{Cond: bpf.JumpEqual, Val: net, SkipTrue: uint8(len(chunk) - 1 - k)}
				if k == len(chunk)-1 {
					jeq.SkipFalse = 1 // over this chunk's "ret #keep"
				}
				prog = append(prog, jeq)
			}
			prog = append(prog, bpf.RetConstant{Val: captureKeep})
		}
	}
	return append(prog, bpf.RetConstant{Val: 0})
}

// minimalPrefixes returns the masked prefixes without duplicates and
// without prefixes covered by a shorter one in the list.
func minimalPrefixes(ps []netip.Prefix) []netip.Prefix {
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := cmp.Compare(a.Bits(), b.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})
	out := sorted[:0]
	kept := make(map[netip.Prefix]bool, len(sorted))
	var keptBits [129]bool
	for _, p := range sorted { // shorter prefixes first
		covered := false
		for bits := range p.Bits() + 1 {
			if keptBits[bits] && kept[netip.PrefixFrom(p.Addr(), bits).Masked()] {
				covered = true // includes exact duplicates (bits == p.Bits())
				break
			}
		}
		if !covered {
			out = append(out, p)
			kept[p] = true
			keptBits[p.Bits()] = true
		}
	}
	return out
}
