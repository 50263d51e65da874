package afpacket

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// TestCaptureKeepsMalformed: frames with the IPv4 EtherType that are not
// IP packets the filter can judge (a runt, IP version 5) reach the reader,
// whatever their "destination", so that the engine counts them (too_short,
// not_ipv4: TestEngineCountsWhatCaptureKeeps) instead of the kernel
// dropping them unseen (issue 12, item 5).
func TestCaptureKeepsMalformed(t *testing.T) { forCaptureModes(t, testCaptureKeepsMalformed) }

func testCaptureKeepsMalformed(t *testing.T, opt Options) {
	nstest.RequireRoot(t)
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, vethtest.Remote.String())
	linkA, err := topo.A.NL.LinkByName(topo.IfA)
	if err != nil {
		t.Fatal(err)
	}
	linkB, err := topo.B.NL.LinkByName(topo.IfB)
	if err != nil {
		t.Fatal(err)
	}
	v5 := testIPv4("192.0.2.9", 12) // not in the captured prefixes either
	v5[0] = 0x55
	runt := testIPv4("198.19.1.1", 0)[:12]
	var fd int
	if err := topo.B.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: linkB.Attrs().Index, Halen: 6}
	copy(to.Addr[:], linkA.Attrs().HardwareAddr)
	for _, f := range [][]byte{v5, runt} {
		if err := unix.Sendto(fd, f, 0, to); err != nil {
			t.Fatalf("send a raw frame: %v", err)
		}
	}
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	var got [][]byte
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); {
		n := vethtest.Read(t, c, bufs, sizes, time.Until(deadline))
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], v5) || !bytes.Equal(got[1], runt) {
		t.Fatalf("captured %x, want the version-5 frame and the runt", got)
	}
}
