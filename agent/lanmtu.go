package agent

import "github.com/vishvananda/netlink"

// The dataplane checks every packet from the tunnel against the LAN
// interface's MTU before injecting it (fragmenting it, or answering it
// with ICMP through the tunnel: dataplane/lanmtu.go). It holds the
// value; the agent reads it when it configures the engine and hands it
// any change the host watcher sees, so no packet costs a syscall.

// lanMTU returns the MTU of the LAN interface, or 0 if it cannot be read
// (the dataplane then injects packets of any size, as before).
func lanMTU(name string) int {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return link.Attrs().MTU
}

// onChecked runs after every pass of the host watcher, which a link,
// address or route change triggers.
func (l *liveSite) onChecked() {
	l.rebindCapture()
	l.updateLANMTU()
}

// updateLANMTU hands the LAN interface's current MTU to the dataplane.
func (l *liveSite) updateLANMTU() {
	l.mu.Lock()
	eng, lan := l.eng, l.cfg.LAN.Interface
	l.mu.Unlock()
	if mtu := lanMTU(lan); eng != nil && mtu > 0 {
		if err := eng.SetLANMTU(mtu); err != nil {
			l.o.log.Warn("LAN MTU not usable; packets from the tunnel are checked against the previous one", "lan", lan, "mtu", mtu, "err", err)
		}
	}
}
