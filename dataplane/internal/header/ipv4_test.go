package header

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

var (
	lanHost  = netip.MustParseAddr("192.168.111.2")
	farHost  = netip.MustParseAddr("11.11.11.100")
	tutorial = dptest.EchoRequest(lanHost, farHost, 40, 1, 56) // ping's "56(84) bytes"
)

func TestTutorialEchoIs84Bytes(t *testing.T) {
	if len(tutorial) != 84 {
		t.Fatalf("echo is %d bytes, want 84", len(tutorial))
	}
}

func TestParseIPv4Valid(t *testing.T) {
	h, r := ParseIPv4(tutorial)
	if r != OK {
		t.Fatalf("reason %v", r)
	}
	want := IPv4{HeaderLen: 20, TotalLen: 84, TTL: 64, Proto: 1, FlagsOff: IPv4FlagDF, Src: lanHost, Dst: farHost}
	if h != want {
		t.Fatalf("got %+v, want %+v", h, want)
	}
	if !h.DF() || h.FragOffset() != 0 {
		t.Fatalf("df %v, frag offset %d", h.DF(), h.FragOffset())
	}
}

func TestParseIPv4WithOptionsAndPadding(t *testing.T) {
	pkt := dptest.IPv4{Src: lanHost, Dst: farHost, TTL: 9, Proto: 17, Options: []byte{1, 1, 1, 0}}.Marshal([]byte("hi"))
	padded := append(pkt, make([]byte, 46-len(pkt))...) // Ethernet minimum payload
	h, r := ParseIPv4(padded)
	if r != OK || h.HeaderLen != 24 || h.TotalLen != len(pkt) || h.TTL != 9 {
		t.Fatalf("got %+v, %v", h, r)
	}
}

// corrupt returns a copy of the tutorial echo changed by f.
func corrupt(f func(b []byte)) []byte {
	b := append([]byte(nil), tutorial...)
	f(b)
	return b
}

// fixChecksum recomputes the header checksum of b (20-byte header).
func fixChecksum(b []byte) {
	binary.BigEndian.PutUint16(b[10:], 0)
	binary.BigEndian.PutUint16(b[10:], dptest.Checksum(b[:20]))
}

func TestParseIPv4Reasons(t *testing.T) {
	cases := []struct {
		name string
		pkt  []byte
		want Fault
	}{
		{"empty", nil, TooShort},
		{"19 bytes", tutorial[:19], TooShort},
		{"IHL 4", corrupt(func(b []byte) { b[0] = 0x44; fixChecksum(b) }), Malformed},
		{"IHL 15 beyond packet", corrupt(func(b []byte) { b[0] = 0x4f; binary.BigEndian.PutUint16(b[2:], 60) })[:40], TooShort},
		{"total length < IHL", corrupt(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19); fixChecksum(b) }), Malformed},
		{"truncated", tutorial[:83], TooShort},
		{"bad checksum", corrupt(func(b []byte) { b[11] ^= 1 }), Malformed},
		{"changed TTL", corrupt(func(b []byte) { b[8]-- }), Malformed},
	}
	for _, c := range cases {
		if _, r := ParseIPv4(c.pkt); r != c.want {
			t.Errorf("%s: got %v, want %v", c.name, r, c.want)
		}
	}
}

// TestChecksumKnown checks a header from the wild (the Wikipedia example).
func TestChecksumKnown(t *testing.T) {
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := Checksum(h, 0); got != 0xb861 {
		t.Fatalf("checksum %#04x, want 0xb861", got)
	}
	h[10], h[11] = 0xb8, 0x61
	if got := Checksum(h, 0); got != 0 {
		t.Fatalf("checksum over valid header %#04x, want 0", got)
	}
}

// TestChecksumMatchesReference compares the unrolled checksum with the
// plain one in dptest over random lengths, odd ones included.
func TestChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := Checksum(b, 0), dptest.Checksum(b); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", len(b), got, want)
		}
	}
}

// TestChecksumUpdateRFC1624 is the example of RFC 1624 section 4, where the
// older incremental formula wrongly yields 0xffff.
func TestChecksumUpdateRFC1624(t *testing.T) {
	if got := ChecksumUpdate(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Fatalf("got %#04x, want 0x0000", got)
	}
}

// TestDecrementTTL checks the incremental update against a full
// recomputation, for every TTL over random headers, options included.
func TestDecrementTTL(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		pkt := randomHeader(rng)
		for ttl := 2; ttl <= 255; ttl++ {
			pkt[8] = byte(ttl)
			fixChecksumLen(pkt)
			DecrementTTL(pkt)
			got := binary.BigEndian.Uint16(pkt[10:])
			fixChecksumLen(pkt)
			if want := binary.BigEndian.Uint16(pkt[10:]); got != want || pkt[8] != byte(ttl-1) {
				t.Fatalf("ttl %d: checksum %#04x, want %#04x (ttl now %d)", ttl, got, want, pkt[8])
			}
			if _, r := ParseIPv4(pkt); r != OK {
				t.Fatalf("ttl %d: decremented header does not parse: %v", ttl, r)
			}
		}
	}
}

// randomHeader returns a random valid IPv4 header (with random options).
func randomHeader(rng *rand.Rand) []byte {
	hl := 20 + 4*rng.IntN(11)
	b := make([]byte, hl)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl))
	return b
}

// fixChecksumLen recomputes the checksum of a header of any IHL.
func fixChecksumLen(b []byte) {
	hl := int(b[0]&0xf) * 4
	binary.BigEndian.PutUint16(b[10:], 0)
	binary.BigEndian.PutUint16(b[10:], dptest.Checksum(b[:hl]))
}
