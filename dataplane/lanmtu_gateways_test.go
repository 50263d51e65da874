package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// TestLANMTUBetweenGateways plays issue 12's two pings in memory: west's
// 1500-byte host pings east's host, east's LAN has MTU 1420, and west
// routes only east's host to east (as the tutorial does), not east's LAN
// address, from which east's ICMP errors come.
func TestLANMTUBetweenGateways(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	wcfg := westConfig()
	wcfg.Peers[0].Prefixes = pfxs("11.11.11.100/32")
	ecfg := eastConfig()
	ecfg.LANMTU = 1420
	west := startGateway(t, nw, westOuter, wcfg)
	east := startGateway(t, nw, eastOuter, ecfg)

	// ping -M do -s 1444: 1472 bytes fit the tunnel (1500 - 28) but not
	// east's LAN; west's host gets fragmentation needed with MTU 1420.
	df := dptest.EchoRequest(westHost, eastHost, 41, 1, 1444)
	west.capture.Send(df)
	msg := recvInjected(t, west)
	if len(msg) < 56 || msg[9] != 1 || msg[20] != 3 || msg[21] != 4 || binary.BigEndian.Uint16(msg[26:]) != 1420 ||
		!bytes.Equal(msg[12:16], ecfg.ICMPSource.AsSlice()) || !bytes.Equal(msg[16:20], westHost.AsSlice()) {
		t.Fatalf("west injected % x, want fragmentation needed (MTU 1420) from east's LAN address", msg[:min(len(msg), 56)])
	}
	if east.drops()["too_big_lan"] != 1 || west.drops()["src_not_allowed"] != 0 {
		t.Errorf("east too_big_lan %d, west src_not_allowed %d", east.drops()["too_big_lan"], west.drops()["src_not_allowed"])
	}

	// ping -M dont -s 1472: 1500 bytes, fragmented by east for its LAN.
	big := dptest.IPv4{Src: westHost, Dst: eastHost, Proto: dptest.ProtoICMP, TTL: 64, ID: 9}.Marshal(dptest.ICMPEcho(41, 2, 1472))
	west.capture.Send(big)
	f1, f2 := recvInjected(t, east), recvInjected(t, east)
	want := forwarded(big)
	if len(f1) > 1420 || len(f2) > 1420 || !bytes.Equal(append(bytes.Clone(f1[20:]), f2[20:]...), want[20:]) ||
		binary.BigEndian.Uint16(f2[6:]) != uint16((len(f1)-20)/8) || f1[6]&0x20 == 0 {
		t.Fatalf("east injected %d and %d bytes, not the two fragments of the 1500-byte ping", len(f1), len(f2))
	}
	if st := east.eng.Stats(); st.Fragmented != 1 || st.Fragments != 2 {
		t.Errorf("east counted %d fragmented, %d fragments", st.Fragmented, st.Fragments)
	}
	if err := east.eng.SetLANMTU(1500); err != nil {
		t.Fatal(err)
	}
	west.capture.Send(big)
	if got := recvInjected(t, east); !bytes.Equal(got, want) {
		t.Fatalf("after SetLANMTU(1500), east injected %d bytes, want the whole packet", len(got))
	}
}
