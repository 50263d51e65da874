package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// Classic BPF filter for the capture socket.
//
// The program is run by the kernel on every frame the capture socket is
// bound to, before anything is queued to the socket. With a SOCK_DGRAM
// packet socket the packet data the filter sees starts at the network
// header, so all offsets below are relative to the IP header.
//
// Layout (IPv4 only for now; IPv6 slots in as a second family):
//
//	ld   #pkttype              ; ancillary load, kernel only
//	jeq  #PACKET_HOST, 1, 0
//	ret  #0                    ; not addressed to this host: drop
//	--- match program (runnable in golang.org/x/net/bpf's VM) ---
//	ldb  [0]
//	rsh  #4                    ; IP version nibble
//	jeq  #4, 0, 1
//	ja   v4                    ; (a later "jeq #6 / ja v6" goes here)
//	ret  #0
//	v4:
//	ld   [16]                  ; IPv4 destination address
//	tax
//	per prefix length L (longest first):
//	    txa ; and #mask(L)     ; (no "and" for /32)
//	    jeq #net1, ->keep ; jeq #net2, ->keep ; ...
//	    (at most captureChunk compares, each chunk followed by "ret #keep"
//	     so that conditional jumps stay within their 8-bit range)
//	ret  #0
//
// A packet too short for a load makes the kernel (and the VM) abort the
// program with 0, i.e. drop it.

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
)

// CaptureFilter returns the assembled classic BPF program for a capture
// socket: it accepts only frames addressed to this host (pkttype ==
// PACKET_HOST, an ancillary load that only the Linux kernel implements)
// that are IPv4 packets whose destination address lies in one of prefixes.
// An empty prefix list yields a program that accepts nothing. IPv6
// prefixes are rejected with an error for now.
func CaptureFilter(prefixes []netip.Prefix) ([]bpf.RawInstruction, error) {
	match, err := captureMatchProgram(prefixes)
	if err != nil {
		return nil, err
	}
	prog := make([]bpf.Instruction, 0, 3+len(match))
	prog = append(prog,
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: linuxPacketHost, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	)
	prog = append(prog, match...)
	if len(prog) > bpfMaxInstructions {
		return nil, fmt.Errorf("capture filter: %d prefixes need %d BPF instructions, more than the kernel's limit of %d",
			len(prefixes), len(prog), bpfMaxInstructions)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capture filter: %w", err)
	}
	return raw, nil
}

// captureMatchProgram is the part of the capture filter that looks only at
// packet bytes (no ancillary loads), so it can run in bpf.NewVM in tests.
func captureMatchProgram(prefixes []netip.Prefix) ([]bpf.Instruction, error) {
	var v4 []netip.Prefix
	for _, p := range prefixes {
		switch {
		case !p.IsValid():
			return nil, fmt.Errorf("capture filter: invalid prefix %v", p)
		case p.Addr().Is4():
			v4 = append(v4, p.Masked())
		default:
			return nil, fmt.Errorf("capture filter: prefix %v: %w", p, errIPv6NotSupported)
		}
	}
	if len(v4) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: 0}}, nil
	}

	v4block := ipv4DstBlock(minimalPrefixes(v4))

	// Version dispatch. Each family gets "jeq #ver, 0, 1; ja block" so
	// that blocks of any length can follow; today there is one family.
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipFalse: 1},
		bpf.Jump{Skip: 1}, // to v4block, right after "ret #0"
		bpf.RetConstant{Val: 0},
	}
	return append(prog, v4block...), nil
}

var errIPv6NotSupported = errors.New("IPv6 is not supported yet")

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
	var keptBits [33]bool
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
