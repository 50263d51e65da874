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

// TestRouterRelayAndReconfigure: with Config.Relay an Inbound hands a
// packet for another peer to Relay after the router hop (TTL decremented,
// counted as received from one peer and sent to the other), counts
// tunnel_busy when Relay refuses it, and sends a DF packet too big for the
// next peer's path back as fragmentation needed; Reconfigure swaps the
// tables while the caller's paths are paused, keeping the counters of the
// peers that stay, and an Outbound made before it follows.
func TestRouterRelayAndReconfigure(t *testing.T) {
	inj := dptest.NewInjector()
	cfg := fixtureConfig()
	cfg.Relay = true
	r, err := dataplane.NewRouter(cfg, inj)
	if err != nil {
		t.Fatal(err)
	}
	in := dataplane.NewInbound(r, 4)
	var relayed [][]byte
	take := true
	in.Relay = func(pkt []byte) bool {
		if take {
			relayed = append(relayed, append([]byte(nil), pkt...))
		}
		return take
	}
	in.Deliver([][]byte{udp4("10.2.0.9", "10.1.0.9", 64, false, 100)}) // roaming -> fixed
	take = false
	in.Deliver([][]byte{udp4("10.2.0.9", "10.1.0.9", 64, false, 100)})
	take = true
	in.Deliver([][]byte{udp4("10.2.0.9", "10.1.0.9", 64, true, 1400)}) // DF, over fixed's 1400 - 28
	if len(relayed) != 2 || relayed[0][8] != 63 || relayed[1][20] != 3 || relayed[1][21] != 4 {
		t.Fatalf("relayed %d packets: % x", len(relayed), relayed)
	}
	st := r.Stats()
	if st.Drops["tunnel_busy"] != 1 || st.Drops["too_big"] != 1 || st.Peers[0].TxPackets != 1 || st.Peers[1].RxPackets != 1 || st.ICMPSent != 1 {
		t.Errorf("drops %v, fixed tx %d, roaming rx %d, ICMP sent %d", st.Drops, st.Peers[0].TxPackets, st.Peers[1].RxPackets, st.ICMPSent)
	}

	out := dataplane.NewOutbound(r, 1)
	pauses, paused := 0, false
	nw := fixtureConfig()
	nw.Peers = append(nw.Peers[:1:1], dataplane.PeerConfig{Name: "new", Prefixes: pfxs("10.3.0.0/16")})
	was, err := r.Reconfigure(nw, func() func() { pauses, paused = pauses+1, true; return func() { paused = false } })
	if err != nil || pauses != 1 || paused || len(was) != 2 || was[0] != 0 || was[1] != -1 {
		t.Fatalf("Reconfigure: %v, paused %d times (still: %v), was %v", err, pauses, paused, was)
	}
	pkt := udp4("192.168.1.5", "10.3.0.1", 64, false, 100)
	sizes := []int{len(pkt)}
	out.Forward([][]byte{pkt}, sizes, 1)
	st = r.Stats()
	if sizes[0] != 100 || len(st.Peers) != 2 || st.Peers[1].Name != "new" || st.Peers[1].TxPackets != 1 || st.Peers[0].TxPackets != 1 {
		t.Errorf("after Reconfigure: size %d, peers %+v", sizes[0], st.Peers)
	}
	if _, err := r.Reconfigure(dataplane.Config{Peers: []dataplane.PeerConfig{{Name: "bad"}}}, func() func() {
		t.Error("paused for an invalid config")
		return func() {}
	}); err == nil {
		t.Error("invalid config accepted")
	}
}
