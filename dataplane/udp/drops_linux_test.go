package udp

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// TestUDPTransportKernelDrops: a tunnel socket with a tiny receive buffer
// that nobody reads overflows; every datagram the kernel dropped is in
// KernelDrops, and what was kept can still be read. The count survives
// Close.
func TestUDPTransportKernelDrops(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t, "dpkd")
	tr := listenUDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	if err := tr.rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4096)
	}); err != nil {
		t.Fatal(err)
	}
	if tr.KernelDrops() != 0 {
		t.Fatalf("a new socket has %d drops", tr.KernelDrops())
	}
	sender := vethtest.UDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	const sent = 200
	for range sent {
		vethtest.SendTo(t, sender, tr.LocalAddr().String(), make([]byte, 1000))
	}
	drops := tr.KernelDrops()
	if drops == 0 || drops >= sent {
		t.Fatalf("%d of %d datagrams dropped by the kernel; want some, not all", drops, sent)
	}
	kept := readDatagrams(t, tr, int(sent-drops), 2048, 5*time.Second)
	if uint64(len(kept))+drops != sent {
		t.Errorf("read %d + dropped %d != sent %d", len(kept), drops, sent)
	}
	tr.Close()
	if got := tr.KernelDrops(); got != drops {
		t.Errorf("after Close: %d drops, want %d", got, drops)
	}
}
