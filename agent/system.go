package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"os"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/netcfg"
)

// system is everything the agent needs of the machine it runs on, so that
// its life cycle (up, reload, capture re-binds, down) runs in memory in
// tests: osSystem (system_os.go) is the real one, over netlink, AF_PACKET,
// sockets, signals and the service manager; the tests' fakeSystem is a
// netcfgtest.Host with the dptest fakes. The state directory (journals,
// locks, the status socket) is real files in both.
type system interface {
	hostSystem
	namespaceReader
	plainIO
	process
}

// hostSystem opens the host configuration netcfg applies, reverts and
// watches.
type hostSystem interface {
	// openHost opens the agent's own network namespace.
	openHost() (siteHost, error)
	// journalHost opens the host journal j is reverted on: the network
	// namespace its changes were made in (netns.go).
	journalHost(j *netcfg.Journal, log *slog.Logger) (siteHost, error)
	// selfNetNS identifies the agent's own network namespace.
	selfNetNS() (netcfg.NetNSID, error)
}

// siteHost is a host netcfg configures: the host, its change
// notifications (for the watcher), and the handles it holds.
type siteHost interface {
	netcfg.Host
	netcfg.ChangeSource
	Close()
}

// namespaceReader reads the agent's own network namespace (read-only, no
// privilege needed): what validation asks (config.HostInfo, through
// hostLinks) and what the dataplane is told of the LAN interface.
type namespaceReader interface {
	linkExists(name string) bool
	addrs() ([]config.HostAddr, error)
	defaultRoutes() ([]config.HostRoute, error)
	// linkIndex is the interface index of a link: 0 when there is no
	// such link, an error when it could not be looked up.
	linkIndex(name string) (int, error)
	// linkMTU is the MTU of a link, 0 when it cannot be read.
	linkMTU(name string) int
	// linkAddrs lists the addresses of a link, interface form.
	linkAddrs(name string) ([]netip.Prefix, error)
}

// plainIO opens the packet paths of plain mode (tunnel_plain.go); the
// capture and injection serve wireguard mode too, which has its own UDP
// transport (tunnel_wireguard.go).
type plainIO interface {
	openCapture(lan string, prefixes []netip.Prefix, opt afpacket.Options) (lanCapture, error)
	openInjector() (dataplane.Injector, error)
	listenUDP(addr netip.AddrPort) (tunnelTransport, error)
	// pathMTU is the kernel's path MTU towards dst.
	pathMTU(dst netip.Addr) (int, error)
}

// lanCapture is the capture on the LAN interface.
type lanCapture interface {
	dataplane.Capture
	// SetPrefixes replaces the destinations the capture takes.
	SetPrefixes(prefixes []netip.Prefix) error
	// counters are its drops, for status and metrics.
	counters() captureCounters
}

// tunnelTransport is plain mode's UDP socket.
type tunnelTransport interface {
	dataplane.Transport
	// status is its own counters, for status and metrics.
	status() *TransportStatus
}

// process is what the agent's process gets from and tells the system.
type process interface {
	// signals relays the signals sig to the returned channel until stop
	// is called (signal.Notify, signal.Stop).
	signals(sig ...os.Signal) (c <-chan os.Signal, stop func())
	// notify tells the service manager the agent's state (sd_notify).
	notify(state string) error
	// checkFile checks a file to reload in a child process (the agent's
	// own binary: reload_check.go) and returns its problems as a
	// *config.Error, nil when it is valid.
	checkFile(ctx context.Context, file string) error
	// lookup resolves a host name (peer endpoints given as names).
	lookup(ctx context.Context, host string) ([]netip.Addr, error)
}

// signalContext returns a context cancelled by the first of the signals
// sig (signal.NotifyContext, through the system).
func signalContext(sys system, sig ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	c, stopSignals := sys.signals(sig...)
	go func() {
		select {
		case <-c:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		stopSignals()
		cancel()
	}
}
