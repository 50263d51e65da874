package afpacket

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// TestCaptureOnTUN: on an interface without a link-layer header (a tun
// device, as a WireGuard interface is), the capture sees the IP packet at
// the frame's start, on both receive paths, and completes nothing that
// was complete.
func TestCaptureOnTUN(t *testing.T) { forCaptureModes(t, testCaptureOnTUN) }

func testCaptureOnTUN(t *testing.T, opt Options) {
	nstest.RequireRoot(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no tun device: %v", err)
	}
	ns := nstest.New(t, "dptun")
	tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun-lan"}, Mode: netlink.TUNTAP_MODE_TUN,
		Flags: netlink.TUNTAP_NO_PI, Queues: 1, NonPersist: true} // gone when its file closes
	if err := ns.Do(func() error { return netlink.LinkAdd(tun) }); err != nil {
		t.Skipf("create a tun device: %v", err)
	}
	t.Cleanup(func() {
		for _, f := range tun.Fds {
			f.Close()
		}
	})
	link, err := ns.NL.LinkByName("tun-lan")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.NL.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if l, err := linkOfIn(t, ns, "tun-lan"); err != nil || l.linkLen != 0 || l.vnetLen != 0 {
		t.Fatalf("link of a tun device: %+v, %v; want SOCK_RAW without a link-layer header", l, err)
	}
	c := openCaptureWithIn(t, ns, "tun-lan", opt, vethtest.Remote.String())
	if c.link.vnetLen != vnetHdrLen {
		t.Errorf("no virtio-net header on the tun capture (%+v)", c.link)
	}
	seg := dptest.UDP4(dptest.IPv4{Src: vethtest.AddrB, Dst: vethtest.Remote.Addr().Next(), TTL: 64}, 1, 2, []byte("through a tun"))
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) { // the first write may precede the link's readiness
		if _, err := tun.Fds[0].Write(seg.Packet); err != nil {
			t.Fatalf("write into the tun device: %v", err)
		}
		if n := vethtest.Read(t, c, bufs, sizes, time.Until(deadline)); n > 0 {
			if got := bufs[0][:sizes[0]]; !bytes.Equal(got, seg.Packet) {
				t.Fatalf("captured\n% x\nwant\n% x", got, seg.Packet)
			}
			return
		}
	}
	t.Fatal("nothing captured")
}

// linkOfIn runs linkOf in ns (and tells what enableVnet would add).
func linkOfIn(t *testing.T, ns *nstest.NS, ifname string) (l captureLink, err error) {
	t.Helper()
	err = ns.Do(func() (err error) { l, err = linkOf(ifname); return err })
	return l, err
}
