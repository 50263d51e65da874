package udp

import (
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// PathMTU returns the kernel's MTU for the route towards dst (including a
// path MTU learned from ICMP, if any), in the calling thread's network
// namespace. It connects an unbound UDP socket to dst port 9 (discard) and
// reads IP_MTU / IPV6_MTU: connect on a UDP socket only selects the route,
// no packet is sent.
func PathMTU(dst netip.Addr) (int, error) {
	opErr := func(err error) (int, error) {
		return 0, &net.OpError{Op: "pathmtu", Net: "ip", Addr: &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}, Err: err}
	}
	if !dst.IsValid() {
		return opErr(os.NewSyscallError("connect", unix.EINVAL))
	}
	var (
		fam, level, opt int
		sa              unix.Sockaddr
	)
	if a := dst.Unmap(); a.Is4() {
		fam, level, opt = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: 9, Addr: a.As4()}
	} else {
		fam, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU
		sa6 := &unix.SockaddrInet6{Port: 9, Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return opErr(err)
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return opErr(os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return opErr(os.NewSyscallError("connect", err))
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return opErr(os.NewSyscallError("getsockopt", err))
	}
	return mtu, nil
}
