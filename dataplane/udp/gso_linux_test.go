package udp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/ethfeat"
)

func TestRunLen(t *testing.T) {
	a, b := netip.MustParseAddrPort("198.18.0.2:1"), netip.MustParseAddrPort("198.18.0.3:1")
	mk := func(sizes ...int) [][]byte {
		var bufs [][]byte
		for _, s := range sizes {
			bufs = append(bufs, make([]byte, s))
		}
		return bufs
	}
	big := make([]int, 100)
	for i := range big {
		big[i] = 1200
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		to    []netip.AddrPort
		want  int
	}{
		{"equal", []int{100, 100, 100}, []netip.AddrPort{a, a, a}, 3},
		{"shorter last ends run", []int{100, 100, 50, 100}, []netip.AddrPort{a, a, a, a}, 3},
		{"longer breaks run", []int{100, 200}, []netip.AddrPort{a, a}, 1},
		{"other destination", []int{100, 100, 100}, []netip.AddrPort{a, a, b}, 2},
		{"keepalive alone", []int{0, 0}, []netip.AddrPort{a, a}, 1},
		{"keepalive ends run", []int{100, 0}, []netip.AddrPort{a, a}, 1},
		{"byte limit", big, nil, gsoMaxBytes / 1200},
	} {
		to := tc.to
		for len(to) < len(tc.sizes) {
			to = append(to, a)
		}
		if got := runLen(mk(tc.sizes...), to); got != tc.want {
			t.Errorf("%s: runLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// gsoBatchFor returns a batch mixing GSO runs, shorter tails, keepalives
// and a second destination, and the payloads expected at each receiver.
func gsoBatchFor(to1, to2 netip.AddrPort) (bufs [][]byte, to []netip.AddrPort, want1, want2 []string) {
	add := func(dst netip.AddrPort, p string) {
		bufs, to = append(bufs, []byte(p)), append(to, dst)
		if dst == to1 {
			want1 = append(want1, p)
		} else {
			want2 = append(want2, p)
		}
	}
	for i := range 150 { // more than gsoMaxSegments of one size
		add(to1, fmt.Sprintf("%04d%s", i, strings.Repeat("x", 1000)))
	}
	add(to1, "short tail")
	add(to1, "")
	for i := range 3 {
		add(to2, fmt.Sprintf("%04d to the other", i))
	}
	add(to1, "last")
	return bufs, to, want1, want2
}

// checkGSOBatch sends the mixed batch from A and checks that both of B's
// sockets receive exactly their datagrams, one by one and in order.
func checkGSOBatch(t *testing.T, topo *vethtest.Topo, ta *Transport) {
	t.Helper()
	tb1 := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	tb2 := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	if n, err := ta.WriteBatch([][]byte{[]byte("warm-up")}, []netip.AddrPort{tb1.LocalAddr()}); n != 1 {
		t.Fatalf("warm-up: %v", err) // resolve ARP before the burst
	}
	readDatagrams(t, tb1, 1, 64, 5*time.Second)
	bufs, to, want1, want2 := gsoBatchFor(tb1.LocalAddr(), tb2.LocalAddr())
	if n, err := ta.WriteBatch(bufs, to); n != len(bufs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(bufs))
	}
	for _, r := range []struct {
		tr   *Transport
		want []string
	}{{tb1, want1}, {tb2, want2}} {
		got := readDatagrams(t, r.tr, len(r.want), 2048, 5*time.Second)
		for i, g := range got {
			if g.payload != r.want[i] || g.from != ta.LocalAddr() {
				t.Fatalf("datagram %d: %.20q from %v, want %.20q", i, g.payload, g.from, r.want[i])
			}
		}
	}
}

func TestUDPTransportGSO(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	checkGSOBatch(t, topo, ta)
	if !ta.gso.Load() {
		t.Error("GSO switched off on a device with checksum offload")
	}
}

// Kernels before 6.11 refuse GSO with EIO when the outgoing device has no
// tx checksum offload; newer ones segment and checksum in software. Either
// way every datagram must arrive.
func TestUDPTransportGSOChecksumOffloadOff(t *testing.T) {
	topo := vethtest.New(t, 1500)
	err := topo.A.Do(func() error {
		et, err := ethfeat.Open()
		if err != nil {
			return err
		}
		defer et.Close()
		return et.Change(topo.IfA, map[string]bool{"tx-checksum-ip-generic": false})
	})
	if err != nil {
		t.Fatalf("switch tx checksum offload of %s off: %v", topo.IfA, err)
	}
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	checkGSOBatch(t, topo, ta)
	t.Logf("GSO still on: %v", ta.gso.Load())
}

// A GSO message the kernel refuses (here EINVAL: UDP_SEGMENT is invalid on
// a socket with SO_NO_CHECK) is resent datagram by datagram.
func TestUDPTransportGSORefused(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	var serr error
	if err := ta.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_NO_CHECK: %v %v", err, serr)
	}
	checkGSOBatch(t, topo, ta)
}
