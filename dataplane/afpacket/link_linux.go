package afpacket

import (
	"encoding/binary"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How the capture socket is opened on an interface (captureLink).
//
// The capture wants two things from the kernel besides the IP packet: the
// GSO type and size of a super-packet (to cut a UDP GSO super-datagram at
// the sender's datagram boundaries, and TCP at the sender's segment size),
// and whether its checksum is partial. PACKET_VNET_HDR gives both, in a
// virtio-net header before each frame, but only on a SOCK_RAW socket,
// which also delivers the link-layer header. So on the interfaces whose
// link-layer header length is fixed and known, the socket is SOCK_RAW with
// PACKET_VNET_HDR, and both headers are stripped on receipt: on the socket
// path each message scatters them into a separate slot (mmsgBufs.headLen)
// and the IP packet straight into the caller's buffer; on the ring the
// frame is copied from its network header. The kernel reports where the
// network header is with every frame (tp_net), and a frame whose
// link-layer header is not the expected length is dropped and counted
// (Unreadable), never misread. Other interface types keep the SOCK_DGRAM
// socket, without GSO sizes: TCP super-packets are then cut to the MTU and
// UDP GSO super-datagrams are left whole.
type captureLink struct {
	sockType int // unix.SOCK_RAW or unix.SOCK_DGRAM
	linkLen  int // bytes of link-layer header before the IP header in what the socket (and its filter) sees
	vnetLen  int // vnetHdrLen once PACKET_VNET_HDR is on, else 0
}

// ARP hardware types (linux/if_arp.h) whose link-layer header length on
// receipt is known.
const (
	arphrdEther  = 1      // Ethernet, and what looks like it: veth, bridge, VLAN, bond, macvlan
	arphrdPPP    = 512    // no link-layer header
	arphrdRawIP  = 519    // no link-layer header
	arphrdNone   = 0xfffe // tun, WireGuard: no link-layer header
	ethHeaderLen = 14     // VLAN tags are taken out before taps
)

// linkOf chooses how to open the capture on the interface ifname from its
// ARP hardware type.
func linkOf(ifname string) (captureLink, error) {
	hw, err := hardwareType(ifname)
	if err != nil {
		return captureLink{}, err
	}
	switch hw {
	case arphrdEther:
		return captureLink{sockType: unix.SOCK_RAW, linkLen: ethHeaderLen}, nil
	case arphrdNone, arphrdPPP, arphrdRawIP:
		return captureLink{sockType: unix.SOCK_RAW}, nil
	}
	return captureLink{sockType: unix.SOCK_DGRAM}, nil
}

// hardwareType returns the ARP hardware type of the interface ifname in
// the calling thread's network namespace (SIOCGIFHWADDR: the family of the
// hardware address it returns).
func hardwareType(ifname string) (uint16, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, os.NewSyscallError("ioctl SIOCGIFHWADDR", err)
	}
	return ifr.Uint16(), nil
}

// enableVnet turns PACKET_VNET_HDR on for a SOCK_RAW socket (before its
// ring is set up). A kernel that refuses it leaves the capture without
// GSO sizes, as on a SOCK_DGRAM socket.
func (l *captureLink) enableVnet(fd int) {
	if l.sockType != unix.SOCK_RAW {
		return
	}
	if unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) == nil {
		l.vnetLen = vnetHdrLen
	}
}

// headLen is what precedes the IP header in each message of the socket.
func (l captureLink) headLen() int { return l.vnetLen + l.linkLen }

// auxNetOff is the offset of tp_net in struct tpacket_auxdata.
var auxNetOff = int(unsafe.Offsetof(unix.TpacketAuxdata{}.Net))

// message interprets message i of a socket batch: hdrLen bytes were
// received in all, head first (the virtio-net and link-layer headers), and
// aux is its PACKET_AUXDATA. It returns the IP packet's length in the
// buffer and what the headers say of it; ok is false for a frame whose
// link-layer header is not where it is expected.
func (l captureLink) message(head, aux []byte, received int) (size int, m frameMeta, ok bool) {
	if len(aux) >= auxNetOff+2 && int(binary.NativeEndian.Uint16(aux[auxNetOff:])) != l.linkLen {
		return 0, m, false
	}
	if l.vnetLen > 0 {
		m = parseVnet(head)
	}
	if len(aux) >= 4 && binary.NativeEndian.Uint32(aux)&unix.TP_STATUS_CSUMNOTREADY != 0 {
		m.partial = true
	}
	return max(received-l.headLen(), 0), m, true
}
