package afpacket

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane/internal/header"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// With the veths' tx checksum offload on (their default), B hands its UDP
// packets over with only the pseudo-header sum in the checksum field
// (CHECKSUM_PARTIAL); the capture must deliver them with a complete one.
func TestCaptureCompletesPartialChecksum(t *testing.T) {
	forCaptureModes(t, testCaptureCompletesPartialChecksum)
}

func testCaptureCompletesPartialChecksum(t *testing.T, opt Options) {
	nstest.RequireRoot(t)
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, vethtest.Remote.String())
	conn := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	for _, payload := range []string{"partial checksum", "odd"} {
		vethtest.SendTo(t, conn, "198.19.0.9:7", []byte(payload))
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if got := string(udpPayload(t, pkt)); got != payload {
				t.Fatalf("captured %q, want %q", got, payload)
			}
			if !validL4Checksum(pkt) {
				t.Errorf("%q: UDP checksum %#04x does not verify", payload, binary.BigEndian.Uint16(pkt[26:]))
			}
		}
	}
}

// validL4Checksum verifies the TCP/UDP checksum of an IPv4 packet with a
// 20-byte header over the pseudo-header.
func validL4Checksum(pkt []byte) bool {
	l4 := pkt[20:]
	pseudo := uint32(pkt[9]) + uint32(len(l4))
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	return header.Checksum(l4, pseudo) == 0
}
