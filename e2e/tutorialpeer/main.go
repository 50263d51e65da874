// Command tutorialpeer is a small, independent re-implementation of the
// PacketCord tutorial's l3_tunnel loop, for interoperability tests only.
// It shares no code with tunnel-agent: an AF_PACKET socket on the LAN
// interface, a 1434-byte buffer (MTU 1420 + Ethernet header) as in the C
// code, the same checks, the IP packet sent as is as one UDP payload to
// the fixed peer, and datagrams from the UDP socket injected through a raw
// IP socket when their length equals the inner total length and the
// version is 4. Like the tutorial, it expects the blackhole route and MTU
// to be set up by hand (the test does that) and runs until killed.
package main

import (
	"encoding/binary"
	"flag"
	"log"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

const bufferSize = 1420 + 14 // MTU_SIZE + ETHERNET_HEADER_SIZE

func main() {
	ifname := flag.String("i", "", "LAN interface")
	local := flag.String("local", "", "local UDP address ip:port")
	remote := flag.String("remote", "", "peer UDP address ip:port")
	match := flag.String("match", "", "prefix to tunnel, e.g. 11.11.11.100/32")
	flag.Parse()
	pfx := netip.MustParsePrefix(*match)
	ifi, err := net.InterfaceByName(*ifname)
	must(err)
	raw, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	must(err)
	must(unix.Bind(raw, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}))
	inj, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	must(err)
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(*local)))
	must(err)
	peer := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(*remote))
	go fromTunnel(udp, inj)
	log.Printf("tutorialpeer: %s <-> %s, tunneling %s", *ifname, peer, pfx)
	fromLAN(raw, udp, peer, pfx)
}

// fromLAN is the tutorial's l2_eth branch.
func fromLAN(raw int, udp *net.UDPConn, peer *net.UDPAddr, pfx netip.Prefix) {
	buf := make([]byte, bufferSize)
	for {
		n, from, err := unix.Recvfrom(raw, buf, 0)
		if err != nil || n < 14 {
			continue
		}
		if binary.BigEndian.Uint16(buf[12:14]) != unix.ETH_P_IP || n < 14+20 {
			continue
		}
		ip := buf[14:n]
		if ip[0]>>4 != 4 || n < 14+int(ip[0]&0xf)*4 {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue // ENSURE_INBOUND
		}
		if n < 14+int(ip[0]&0xf)*4+8 {
			continue // too short for a UDP header, as the C code checks
		}
		dst := netip.AddrFrom4([4]byte(ip[16:20]))
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if pfx.Contains(dst) && total <= len(ip) {
			_, _ = udp.WriteToUDP(ip[:total], peer)
		}
	}
}

// fromTunnel is the tutorial's l4_udp branch.
func fromTunnel(udp *net.UDPConn, inj int) {
	buf := make([]byte, bufferSize)
	for {
		n, _, err := udp.ReadFromUDP(buf)
		if err != nil || n < 20 {
			continue
		}
		if n != int(binary.BigEndian.Uint16(buf[2:4])) || buf[0]>>4 != 4 {
			continue
		}
		sa := &unix.SockaddrInet4{Addr: [4]byte(buf[16:20])}
		_ = unix.Sendto(inj, buf[:n], 0, sa)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
