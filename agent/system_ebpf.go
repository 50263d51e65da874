package agent

import (
	"fmt"
	"net/netip"
	"sync"

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

// routeChanges signals (coalesced) each change of the routing tables of
// the process's network namespace, until done is closed.
func (osSystem) routeChanges(done <-chan struct{}) (<-chan struct{}, error) {
	updates := make(chan netlink.RouteUpdate, 256)
	stop := make(chan struct{})
	failed := make(chan struct{})
	var once sync.Once
	err := netlink.RouteSubscribeWithOptions(updates, stop, netlink.RouteSubscribeOptions{
		ErrorCallback: func(error) { once.Do(func() { close(failed) }) },
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to route changes: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer func() {
			close(stop)
			go func() { // the subscription's reader may be sending: let it finish
				for range updates {
				}
			}()
		}()
		for {
			select {
			case <-done:
				return
			case <-failed:
				close(out) // the caller falls back to polling
				return
			case _, ok := <-updates:
				if !ok {
					close(out)
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}
