package dataplane_test

import (
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// TestOutboundInbound drives a Router without an Engine, as WireGuard mode
// does: Outbound passes what may enter the tunnel (TTL decremented) and
// zeroes the rest, injecting their ICMP errors also when a batch is
// larger than the Outbound was made for; Inbound injects what is admitted.
func TestOutboundInbound(t *testing.T) {
	inj := dptest.NewInjector()
	r, err := dataplane.NewRouter(fixtureConfig(), inj)
	if err != nil {
		t.Fatal(err)
	}
	out := dataplane.NewOutbound(r, 1)
	pkts := [][]byte{
		udp4("192.168.1.5", "10.1.0.9", 1, false, 100),  // TTL expires: ICMP
		udp4("192.168.1.5", "10.1.0.9", 64, false, 100), // passes
		udp4("192.168.1.5", "10.1.0.9", 1, false, 100),  // ICMP again, past the batch of 1
		udp4("192.168.1.5", "172.16.0.1", 64, false, 100),
	}
	sizes := make([]int, len(pkts))
	for i, p := range pkts {
		sizes[i] = len(p)
	}
	out.Forward(pkts, sizes, len(pkts))
	if sizes[0] != 0 || sizes[1] != 100 || pkts[1][8] != 63 || sizes[2] != 0 || sizes[3] != 0 {
		t.Errorf("sizes %v, TTL of the passing packet %d", sizes, pkts[1][8])
	}
	for range 2 {
		if msg, err := inj.Recv(time.Second); err != nil || msg[20] != 11 {
			t.Fatalf("ICMP time exceeded not injected: % x, %v", msg, err)
		}
	}
	dataplane.NewInbound(r, 4).Deliver([][]byte{
		udp4("10.1.0.9", "192.168.1.5", 63, false, 100),
		udp4("10.1.0.9", "172.16.0.1", 63, false, 100), // not local
		nil,
	})
	if got, err := inj.Recv(time.Second); err != nil || len(got) != 100 {
		t.Fatalf("admitted packet not injected: %d bytes, %v", len(got), err)
	}
	st := r.Stats()
	if d := st.Drops; d["ttl_expired"] != 2 || d["no_route"] != 1 || d["dst_not_allowed"] != 1 || d["too_short"] != 1 {
		t.Errorf("drops %v", d)
	}
	if p := st.Peers[0]; p.TxPackets != 1 || p.RxPackets != 1 || st.ICMPSent != 2 {
		t.Errorf("fixed: tx %d rx %d, ICMP sent %d", p.TxPackets, p.RxPackets, st.ICMPSent)
	}
}
