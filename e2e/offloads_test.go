package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// TestDefaultOffloads is issue 12's first field report: LAN hosts whose
// checksum and segmentation offloads are left at the kernel's defaults
// (as on veths and VM interfaces; most tests turn them off) hand the
// gateways IPv4 and IPv6 packets with partial checksums, TCP super-packets
// and UDP GSO super-datagrams. TCP (SHA-256 checked), UDP and UDP GSO
// bursts cross the tunnel both ways over both families, with each capture
// mode on both gateways, and the captures report nothing they could not
// read.
func TestDefaultOffloads(t *testing.T) {
	for _, mode := range []string{"socket", "ring"} {
		t.Run(mode, func(t *testing.T) { testDefaultOffloads(t, mode) })
	}
}

func testDefaultOffloads(t *testing.T, mode string) {
	s := newTwoSite6(t, topo.Options{NAT: true, Offloads: true}, false)
	site := func(yaml string) string {
		yaml = strings.Replace(yaml, "lan:\n", "lan:\n  capture: "+mode+"\n", 1)
		return strings.Replace(yaml, ", offloads: {rx: off, tx: off}", "", 1) // site B's host: defaults too
	}
	writeFile(t, s.dir, "client.yaml", site(s.SiteAYAML6("client", false)))
	writeFile(t, s.dir, "server.yaml", site(s.SiteBYAML6("server", false)))
	if f, err := s.ChecksumOffloads(s.Client, topo.ClientLink); err != nil || !f["tx-checksum-ip-generic"] {
		t.Fatalf("client's tx checksum offload: %v, %v; want on", f, err)
	}
	s.start(t)
	ns1 := s.siteBHost(t)
	mustPingEventually(t, "client -> VPS host (IPv4)", s.client(), s.SiteBHost.Addr())
	mustPing6Eventually(t, "client -> VPS host (IPv6)", s.client(), s.SiteBHost6.Addr())

	type host struct {
		name string
		ns   netns.NsHandle
		addr netip.Addr
	}
	client, vps := host{"client", s.client(), s.ClientAddr.Addr()}, host{"VPS host", ns1, s.SiteBHost.Addr()}
	client6, vps6 := host{"client", s.client(), s.ClientAddr6.Addr()}, host{"VPS host", ns1, s.SiteBHost6.Addr()}
	port := uint16(5201)
	for _, dir := range [][2]host{{client, vps}, {vps, client}, {client6, vps6}, {vps6, client6}} {
		from, to := dir[0], dir[1]
		what := from.name + " -> " + to.name + " (" + to.addr.String() + ")"
		tr, err := probe.TCPTransfer(from.ns, to.ns, netip.AddrPortFrom(to.addr, port), 8<<20, 60*time.Second)
		mustTransfer(t, "TCP "+what, tr, err)
		for _, gso := range []int{0, 8} {
			// 1000-byte datagrams, 8 per write with GSO: within the LAN and
			// tunnel MTUs, so every one of them must arrive, or be counted
			// as a kernel drop of a socket of the agents' (a loaded machine
			// can overrun them: that loss is counted, not a defect).
			dropsBefore := s.kernelDrops(t)
			u, err := probe.UDPBurstWith(from.ns, to.ns, netip.AddrPortFrom(to.addr, port+1),
				probe.UDPOptions{Count: 800, Payload: 1000, GSO: gso, Rate: 4000, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatalf("UDP %s (gso %d): %v", what, gso, err)
			}
			lost := uint64(u.Sent - u.Received)
			if u.Sent != 800 || u.Corrupted != 0 || (lost > 0 && s.kernelDrops(t)-dropsBefore < lost) {
				t.Errorf("UDP %s (gso %d): %d of %d datagrams received, %d corrupted, kernel drops counted by the agents %d",
					what, gso, u.Received, u.Sent, u.Corrupted, s.kernelDrops(t)-dropsBefore)
			} else if lost > 0 {
				t.Logf("UDP %s (gso %d): %d of %d lost, all counted as kernel drops (loaded machine)", what, gso, lost, u.Sent)
			}
		}
		port += 2
	}
	for _, site := range []string{"client", "server"} {
		st := s.status(t, site)
		if st.CaptureUnreadable != 0 || st.CaptureTruncated != 0 || st.Dataplane.Drops["too_big"] != 0 {
			t.Errorf("%s: capture unreadable %d, truncated %d, too_big %d; want none", site,
				st.CaptureUnreadable, st.CaptureTruncated, st.Dataplane.Drops["too_big"])
		}
	}
	s.stopAndCompare(t)
}
