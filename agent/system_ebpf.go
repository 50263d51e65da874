package agent

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"tunnel-agent/dataplane/ebpf"
	"tunnel-agent/dataplane/udp"
)

// The real system's eBPF side (ebpfIO, tunnel_ebpf.go).
var _ ebpfIO = osSystem{}

func (osSystem) probeEBPF() (ebpf.Support, error) { return ebpf.Probe() }

func (osSystem) listenUDPNoGRO(addr netip.AddrPort) (tunnelTransport, error) {
	o := udpOptions()
	o.DisableGRO = true
	t, err := udp.Listen(addr, o)
	if err != nil {
		return nil, err
	}
	return udpTransport{t}, nil
}

func (osSystem) wanInterface(ep netip.Addr) (string, error) {
	_, idx, err := ebpf.RouteToEndpoint(ep)
	if err != nil {
		return "", err
	}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		return "", fmt.Errorf("interface %d of the route to %v: %w", idx, ep, err)
	}
	return l.Attrs().Name, nil
}
