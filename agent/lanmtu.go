package agent

// The dataplane checks every packet from the tunnel against the LAN
// interface's MTU before injecting it (fragmenting it, or answering it
// with ICMP through the tunnel: dataplane/lanmtu.go). It holds the
// value; the agent reads it when it configures the engine and hands it
// any change the host watcher sees, so no packet costs a syscall.

// onChecked runs after every pass of the host watcher, which a link,
// address or route change triggers.
func (l *liveSite) onChecked() {
	l.rebindCapture()
	l.updateLANMTU()
}

// updateLANMTU hands the LAN interface's current MTU to the dataplane.
func (l *liveSite) updateLANMTU() {
	l.mu.Lock()
	t, lan := l.tun, l.cfg.LAN.Interface
	l.mu.Unlock()
	if mtu := l.o.sys.linkMTU(lan); mtu > 0 {
		if err := t.SetLANMTU(mtu); err != nil {
			l.o.log.Warn("LAN MTU not usable; packets from the tunnel are checked against the previous one", "lan", lan, "mtu", mtu, "err", err)
		}
	}
}
