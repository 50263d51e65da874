package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/rawip"
	"tunnel-agent/dataplane/udp"
	"tunnel-agent/netcfg"
)

// osSystem is the machine the agent runs on (system.go): the host
// through netlink (netcfg.NetlinkHost), plain mode's packet paths through
// AF_PACKET, raw IP and UDP sockets (package dataplane), signals, the
// service manager (sd_notify), the agent's own binary for checking files,
// and the system resolver.
type osSystem struct{}

var _ system = osSystem{}

func (osSystem) openHost() (siteHost, error) {
	h, err := netcfg.NewNetlinkHost()
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (osSystem) journalHost(j *netcfg.Journal, log *slog.Logger) (siteHost, error) {
	h, err := journalHost(j, log)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (osSystem) selfNetNS() (netcfg.NetNSID, error) { return netcfg.SelfNetNS() }

// ---- The agent's own namespace, read through netlink ----

func (osSystem) linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// addrs lists every address in the agent's namespace with its interface.
func (osSystem) addrs() ([]config.HostAddr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []config.HostAddr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, config.HostAddr{Link: names[a.LinkIndex], Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
	}
	return out, nil
}

// defaultRoutes lists the main table's default routes.
func (osSystem) defaultRoutes() ([]config.HostRoute, error) {
	var out []config.HostRoute
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			hr := config.HostRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
			if fam == netlink.FAMILY_V6 {
				hr.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			if gw, ok := netip.AddrFromSlice(r.Gw); ok {
				hr.Gw = gw.Unmap()
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				hr.Dev = l.Attrs().Name
			}
			out = append(out, hr)
		}
	}
	return out, nil
}

// linkIndex returns the index of a link in the agent's namespace: 0
// when there is no such link, an error when it could not be looked up.
func (osSystem) linkIndex(name string) (int, error) {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("look up %s: %w", name, err)
	}
	return link.Attrs().Index, nil
}

// linkMTU returns the MTU of the LAN interface, or 0 if it cannot be read
// (the dataplane then injects packets of any size, as before).
func (osSystem) linkMTU(name string) int {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return link.Attrs().MTU
}

// linkAddrs reads the addresses of a link in the agent's namespace.
func (osSystem) linkAddrs(name string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("LAN interface %s: %w", name, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

// ---- Plain mode's packet paths ----

func (osSystem) openCapture(lan string, prefixes []netip.Prefix, opt afpacket.Options) (lanCapture, error) {
	c, err := afpacket.Open(lan, prefixes, opt)
	if err != nil {
		return nil, err
	}
	return packetCapture{c}, nil
}

func (osSystem) openInjector() (dataplane.Injector, error) {
	inj, err := rawip.Open()
	if err != nil {
		return nil, err
	}
	return inj, nil
}

func (osSystem) listenUDP(addr netip.AddrPort) (tunnelTransport, error) {
	t, err := udp.Listen(addr, udpOptions())
	if err != nil {
		return nil, err
	}
	return udpTransport{t}, nil
}

func (osSystem) pathMTU(dst netip.Addr) (int, error) { return udp.PathMTU(dst) }

// udpOptions are the tunnel socket's: UDP_GRO unless the environment
// variable TUNNEL_AGENT_UDP_GRO holds a false value as strconv.ParseBool
// reads it ("0", "false"), a switch for measuring (docs/operations.md).
// It is read when the socket is opened, not at package load.
func udpOptions() udp.Options {
	gro, err := strconv.ParseBool(os.Getenv("TUNNEL_AGENT_UDP_GRO"))
	return udp.Options{DisableGRO: err == nil && !gro}
}

// packetCapture is the AF_PACKET capture, with its counters.
type packetCapture struct{ *afpacket.Capture }

func (c packetCapture) counters() captureCounters {
	return captureCounters{truncated: c.Truncated(), gsoDropped: c.GSODropped(), kernelDrops: c.KernelStats().Drops,
		unreadable: c.Unreadable()}
}

// udpTransport is the UDP socket, with its counters.
type udpTransport struct{ *udp.Transport }

func (t udpTransport) status() *TransportStatus {
	g := t.GROStats()
	return &TransportStatus{Truncated: t.Truncated(), KernelDrops: t.KernelDrops(), GRO: g.Enabled,
		GROMessages: g.Messages, GROSegments: g.Segments}
}

// ---- The process ----

func (osSystem) signals(sig ...os.Signal) (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig...)
	return c, func() { signal.Stop(c) }
}

func (osSystem) notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

func (osSystem) checkFile(ctx context.Context, file string) error {
	return checkInChild(ctx, []string{"/proc/self/exe"}, file)
}

// lookup is the system resolver (/etc/hosts, DNS).
func (osSystem) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
