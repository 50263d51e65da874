package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/ebpf"
	"tunnel-agent/netcfg"
)

// ebpfTunnel is plain mode with tunnel.dataplane: ebpf (docs/ebpf.md): two
// tc programs carry the packets; the userspace engine runs beside them on
// what they pass up: the LAN packets the programs hand over through the
// exception buffer (its Capture), the datagrams they leave to the agent's
// UDP socket (its Transport, UDP GRO off), raw injection. An endpoint the
// engine learns is written to the programs' peer map (OnLearn → learned).
type ebpfTunnel struct {
	d         *ebpf.Dataplane
	exc       *ebpf.Exceptions
	eng       *dataplane.Engine
	transport tunnelTransport
	log       *slog.Logger
	lan       string
	listen    netip.AddrPort
	mode      ebpf.AttachMode // tcx or clsact
	ns        namespaceReader
	eio       ebpfIO
	hooks     hookJournal // records clsact hooks in the host journal

	learned chan struct{} // a learned endpoint waits in pending

	// peersMu orders the writes of whole peer sets (Reconfigure, the
	// route refresh) and guards dcfg, the engine's configuration.
	peersMu sync.Mutex
	dcfg    dataplane.Config

	mu      sync.Mutex  // guards what follows
	pcfg    ebpf.Config // the programs' settings, as last written
	att     *ebpf.Attachment
	pickWAN func() ([]string, error) // defaultWANs for the site as last configured
	wan     string                   // the default WAN interface, as last written to the programs
	ifaces  [2]int                   // the LAN's and the default WAN's index, as last written
	failing map[string]string        // what could not be done (a hook, the default WAN), with the error last logged
	retryAt map[hookKey]time.Time    // a hook that could not be made is tried again from then
	pending map[string]netip.AddrPort
	repairs uint64 // hooks put back (re-created LAN, removed filter)
	stopped bool   // Run detached for good
}

// hookKey is one program on one interface.
type hookKey struct{ iface, prog string }

// ebpfIO is what the ebpf tunnel needs of the system besides plainIO:
// the real system has it (system_ebpf.go); the in-memory one of the
// lifecycle tests does not, and such a site does not start.
type ebpfIO interface {
	// probeEBPF says whether the kernel and the process can run the
	// programs (check and up).
	probeEBPF() (ebpf.Support, error)
	// listenUDPNoGRO is listenUDP with UDP GRO off: the programs leave
	// single datagrams to the socket, and a GRO-built train would reach
	// the engine as one.
	listenUDPNoGRO(addr netip.AddrPort) (tunnelTransport, error)
	// wanInterface is the interface the kernel sends to ep by.
	wanInterface(ep netip.Addr) (string, error)
	// routeChanges signals changes of the routing tables (coalesced)
	// until done is closed; the channel is closed if the subscription
	// fails.
	routeChanges(done <-chan struct{}) (<-chan struct{}, error)
}

// hookJournal records the clsact hooks in the host journal so that `down`
// removes them after a crash (tcx links need nothing: they die with the
// process), and forgets them once detached.
type hookJournal interface {
	// record makes the journal's record of hooks exactly hooks.
	record(hooks []ebpf.Hook) error
	forget() error
}

// attachMode is how the programs are hooked: tcx where the kernel has
// it, or what TUNNEL_AGENT_EBPF_ATTACH says (tcx, clsact; for tests and
// for kernels whose tcx misbehaves; docs/operations.md).
func attachMode() (ebpf.AttachMode, error) {
	switch v := os.Getenv("TUNNEL_AGENT_EBPF_ATTACH"); v {
	case "", "auto":
		return ebpf.AttachAuto, nil
	case "tcx":
		return ebpf.AttachTCX, nil
	case "clsact":
		return ebpf.AttachClsact, nil
	default:
		return 0, fmt.Errorf("TUNNEL_AGENT_EBPF_ATTACH=%q: want auto, tcx or clsact", v)
	}
}

// ebpfConfig is the programs' part of the site, with maps sized for it
// (mapSizes).
func ebpfConfig(listen netip.AddrPort, dcfg dataplane.Config) ebpf.Config {
	c := ebpf.Config{ListenPort: listen.Port(), LocalPrefixes: dcfg.LocalPrefixes, Relay: dcfg.Relay,
		LANMTU: dcfg.LANMTU}
	if a := listen.Addr(); !a.IsUnspecified() {
		c.ListenAddr = a.Unmap()
	}
	for _, p := range dcfg.LANPrefixes {
		c.HostAddrs = append(c.HostAddrs, p.Addr())
	}
	peers, prefixes, local := ebpfNeeds(dcfg)
	c.MaxPeers, c.MaxPrefixes, c.MaxLocalPrefixes = mapSize(peers, 256), mapSize(prefixes, 4096), mapSize(local, 1024)
	return c
}

// ebpfNeeds is what a site puts in the programs' maps: peers, the
// larger family's count of peer prefixes, and of local prefixes and LAN
// addresses.
func ebpfNeeds(dcfg dataplane.Config) (peers, prefixes, local int) {
	var n4, n6, l4, l6 int
	for _, p := range dcfg.Peers {
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Unmap().Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	for _, pfx := range dcfg.LocalPrefixes {
		if pfx.Addr().Unmap().Is4() {
			l4++
		} else {
			l6++
		}
	}
	return len(dcfg.Peers), max(n4, n6), max(l4, l6) + len(dcfg.LANPrefixes)
}

// mapSize is the size of a map for n entries: a quarter more, for the
// reloads that add some (the sizes are fixed when the programs load), and
// never below floor (the programs' defaults, small enough for a
// Raspberry Pi: the peer maps are allocated whole, per CPU for the
// counters).
func mapSize(n, floor int) int { return max(floor, n+n/4+16) }

// fitsMaps says why cfg does not fit the maps sized at `up`, nil if it
// does.
func fitsMaps(loaded ebpf.Config, cfg dataplane.Config) error {
	peers, prefixes, local := ebpfNeeds(cfg)
	for _, c := range []struct {
		what     string
		n, limit int
	}{{"peers", peers, loaded.MaxPeers}, {"peer prefixes of one family", prefixes, loaded.MaxPrefixes},
		{"local prefixes and LAN addresses of one family", local, loaded.MaxLocalPrefixes}} {
		if c.n > c.limit {
			return fmt.Errorf("tunnel.dataplane: ebpf: %d %s, but the programs' maps were sized for %d when the agent started: restart it (`systemctl restart`) to apply this file", c.n, c.what, c.limit)
		}
	}
	return nil
}

// ebpfPeers are the engine's peers as the programs see them, at the
// endpoints the engine has now (learned ones included).
func ebpfPeers(dcfg dataplane.Config, current map[string]netip.AddrPort) []ebpf.Peer {
	out := make([]ebpf.Peer, 0, len(dcfg.Peers))
	for _, p := range dcfg.Peers {
		ep := p.Endpoint
		if !ep.IsValid() {
			ep = current[p.Name]
		}
		out = append(out, ebpf.Peer{Name: p.Name, Endpoint: ep, Prefixes: p.Prefixes, PathMTU: p.PathMTU})
	}
	return out
}

// defaultWANs are the interfaces the programs decapsulate on besides
// those of the routes to the peers' endpoints (which wantHooks adds),
// the first being the default WAN interface written to the programs:
// the interface the kernel sends to the first peer endpoint by; without
// an endpoint to send to, the interfaces of the default routes; without
// one, every interface besides the LAN, lo and the namespaces' host ends
// with a global address (a hub that learns its peers on many links).
func defaultWANs(cfg *config.Config, eio ebpfIO, ns namespaceReader) ([]string, error) {
	for _, p := range cfg.Tunnel.Peers {
		if p.Endpoint.IsValid() {
			wan, err := eio.wanInterface(p.Endpoint.Addr())
			if err != nil {
				return nil, err
			}
			return []string{wan}, nil
		}
	}
	rs, err := ns.defaultRoutes()
	if err != nil {
		return nil, fmt.Errorf("default routes: %w", err)
	}
	var found []string
	for _, r := range rs {
		if r.Dev != "" && !slices.Contains(found, r.Dev) {
			found = append(found, r.Dev)
		}
	}
	if len(found) > 0 {
		return found, nil
	}
	addrs, err := ns.addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses: %w", err)
	}
	skip := map[string]bool{cfg.LAN.Interface: true, "lo": true}
	for _, n := range cfg.Namespaces {
		skip[n.Veth.Host] = true
	}
	for _, a := range addrs {
		if !skip[a.Link] && a.Prefix.Addr().IsGlobalUnicast() && !slices.Contains(found, a.Link) {
			found = append(found, a.Link)
		}
	}
	if len(found) == 0 {
		return nil, errors.New("no peer has an endpoint, there is no default route, and no interface besides the LAN has a global address: nothing could carry the tunnel's datagrams")
	}
	slices.Sort(found)
	return found, nil
}

// openEBPF loads the programs, fills their maps, opens the engine's I/O,
// and attaches the programs (after the host configuration, which runs
// before the tunnel opens). Anything that fails undoes the rest.
func openEBPF(cfg *config.Config, dcfg dataplane.Config, sys system, hooks hookJournal, log *slog.Logger) (_ *ebpfTunnel, err error) {
	eio, ok := sys.(ebpfIO)
	if !ok {
		return nil, errors.New("tunnel.dataplane: ebpf: this system cannot load eBPF programs")
	}
	mode, err := attachMode()
	if err != nil {
		return nil, err
	}
	sup, err := eio.probeEBPF()
	if err != nil {
		return nil, fmt.Errorf("tunnel.dataplane: ebpf: this host cannot run the eBPF dataplane (run `tunnel-agent check`, or use tunnel.dataplane: userspace): %w", err)
	}
	if mode == ebpf.AttachAuto { // decided here, so that clsact hooks are journaled before they are made
		mode = ebpf.AttachClsact
		if sup.TCX {
			mode = ebpf.AttachTCX
		}
	}
	t := &ebpfTunnel{log: log, lan: cfg.LAN.Interface, listen: cfg.Tunnel.Listen, mode: mode, hooks: hooks,
		ns: sys, learned: make(chan struct{}, 1), pending: map[string]netip.AddrPort{}, failing: map[string]string{}, retryAt: map[hookKey]time.Time{},
		eio: eio, pickWAN: func() ([]string, error) { return defaultWANs(cfg, eio, sys) }}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	t.pcfg = ebpfConfig(cfg.Tunnel.Listen, dcfg)
	t.d, err = ebpf.Load(t.pcfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel.dataplane: ebpf: %w", err)
	}
	closers = append(closers, t.d.Close)
	if err := t.d.SetPeers(ebpfPeers(dcfg, nil)); err != nil {
		return nil, err
	}
	exc, err := t.d.Exceptions(0)
	if err != nil {
		return nil, err
	}
	t.exc = exc
	closers = append(closers, exc.Close)
	injector, err := sys.openInjector()
	if err != nil {
		return nil, fmt.Errorf("open raw injection socket: %w", err)
	}
	closers = append(closers, injector.Close)
	t.transport, err = eio.listenUDPNoGRO(cfg.Tunnel.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Tunnel.Listen, err)
	}
	closers = append(closers, t.transport.Close)
	dcfg.OnLearn = t.onLearn
	t.dcfg = dcfg
	t.eng, err = dataplane.New(dcfg, exc, t.transport, injector)
	if err != nil {
		return nil, fmt.Errorf("start dataplane: %w", err)
	}
	if err := t.attach(); err != nil {
		return nil, err
	}
	return t, nil
}

// attach hooks the programs where the site needs them (reconcileLocked),
// all or nothing: `up` fails rather than run with a hook missing.
func (t *ebpfTunnel) attach() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.reconcileLocked(true); err != nil {
		return errors.Join(fmt.Errorf("tunnel.dataplane: ebpf: %w", err), t.detachLocked())
	}
	hooked := make([]string, 0, len(t.att.Hooks))
	for _, h := range t.att.Hooks {
		hooked = append(hooked, h.Program+"@"+h.Interface)
	}
	t.log.Info("eBPF programs attached", "lan", t.lan, "wan", t.wan, "hooks", hooked, "mode", t.att.Mode().String())
	return nil
}

// wantHooks are the hooks the programs need now: wan_ingress on the
// default WAN interfaces (defaultWANs, the first of which is written to
// the programs as the default) and on every interface a peer's outer
// packets leave by (the route to its endpoint: its datagrams come back
// there), lan_ingress on the LAN interface; WAN hooks first. The LAN
// interface never gets wan_ingress (a peer reached through it stays on
// the userspace path for what it sends). When the defaults cannot be
// worked out, the current default stays, and defErr says why.
func (t *ebpfTunnel) wantHooks() (def string, want []hookKey, defErr, err error) {
	defs, defErr := t.pickWAN()
	if defErr == nil && defs[0] == t.lan {
		defErr = fmt.Errorf("the peers are reached through the LAN interface %s; the programs need the tunnel's datagrams on another interface", t.lan)
	}
	if defErr != nil {
		defs = []string{t.wan} // the current one (none before the first reconcileLocked, which is strict)
	}
	egress, err := t.d.EgressInterfaces()
	if err != nil {
		return "", nil, defErr, err
	}
	for _, name := range append(defs, egress...) {
		if k := (hookKey{name, ebpf.WANProgramName}); name != t.lan && !slices.Contains(want, k) {
			want = append(want, k)
		}
	}
	return defs[0], append(want, hookKey{t.lan, ebpf.LANProgramName}), defErr, nil
}

// reconcileLocked makes the hooks what wantHooks says: hooks gone from
// the kernel (a filter removed, an interface re-created) are made again
// and counted as repairs, missing ones made, WAN hooks no peer needs any
// more removed, and the interfaces written to the programs when they
// changed. clsact hooks are journaled before they are made. strict (at
// `up`) stops at the first failure; otherwise a hook that cannot be made
// is logged once and tried again after hookRetryInterval. gone says
// whether hooks were found gone (an interface re-created, perhaps: the
// peers' entries then name its old index).
func (t *ebpfTunnel) reconcileLocked(strict bool) (gone bool, err error) {
	if t.att == nil {
		att, err := t.d.NewAttachment(t.mode)
		if err != nil {
			return gone, err
		}
		t.att = att
	}
	missing, err := t.att.Missing()
	if err != nil {
		return gone, err
	}
	gone = len(missing) > 0
	wasGone := map[hookKey]bool{}
	for _, h := range missing {
		t.log.Warn("eBPF program hook gone; attaching again", "program", h.Program, "interface", h.Interface, "mode", h.Mode.String())
		if err := t.att.Unhook(h.Interface, h.Program); err != nil {
			t.log.Warn("removing what is left of the eBPF hook", "program", h.Program, "interface", h.Interface, "err", err)
		}
		wasGone[hookKey{h.Interface, h.Program}] = true
	}
	def, want, defErr, err := t.wantHooks()
	if strict && defErr != nil {
		return gone, defErr
	}
	if defErr != nil {
		t.logFailure(failDefault, fmt.Errorf("keeping %s: %w", t.wan, defErr))
	} else {
		delete(t.failing, failDefault)
	}
	if err != nil {
		if strict {
			return gone, err
		}
		t.logFailure(failInterfaces, err)
		want = nil // the hooks as they were, gone ones made again
		for _, h := range t.att.Hooks {
			want = append(want, hookKey{h.Interface, h.Program})
		}
		for k := range wasGone {
			want = append(want, k)
		}
		if !slices.Contains(want, hookKey{t.lan, ebpf.LANProgramName}) {
			want = append(want, hookKey{t.lan, ebpf.LANProgramName})
		}
	} else {
		delete(t.failing, failInterfaces)
	}
	var add []hookKey
	now := time.Now()
	for _, k := range want {
		if !t.att.Has(k.iface, k.prog) && (strict || !now.Before(t.retryAt[k])) {
			add = append(add, k)
		}
	}
	var drop []ebpf.Hook
	for _, h := range t.att.Hooks {
		if !slices.Contains(want, hookKey{h.Interface, h.Program}) {
			drop = append(drop, h)
		}
	}
	var errs []error
	if err := t.setInterfacesLocked(def); err != nil {
		if strict {
			return gone, err
		}
		errs = append(errs, err)
	}
	if len(add) > 0 {
		// Journaled before they are made (a crash in between leaves a
		// record for `down`), as not having created the qdisc, which is
		// what a record can safely say before knowing; rewritten below.
		if err := t.hooks.record(append(clsactHooks(t.att.Hooks), t.plannedHooks(add)...)); err != nil {
			return gone, fmt.Errorf("journal the programs' hooks: %w", err)
		}
	}
	for _, k := range add {
		if err := t.att.Hook(k.iface, k.prog); err != nil {
			if strict {
				return gone, err
			}
			errs = append(errs, err)
			t.logFailure(k.String(), err)
			t.retryAt[k] = now.Add(hookRetryInterval)
			continue
		}
		delete(t.retryAt, k)
		if delete(t.failing, k.String()); wasGone[k] {
			t.repairs++
		}
	}
	for _, h := range drop {
		t.log.Info("no peer is reached through this interface any more; removing its eBPF hook", "program", h.Program, "interface", h.Interface)
		if err := t.att.Unhook(h.Interface, h.Program); err != nil {
			errs = append(errs, err)
			t.log.Warn("removing an eBPF hook", "program", h.Program, "interface", h.Interface, "err", err)
		}
	}
	if len(add) > 0 || len(drop) > 0 || len(missing) > 0 {
		if err := t.hooks.record(clsactHooks(t.att.Hooks)); err != nil {
			return gone, fmt.Errorf("journal the programs' hooks: %w", err)
		}
	}
	return gone, errors.Join(errs...)
}

// setInterfacesLocked writes the LAN and default WAN interfaces to the
// programs when either changed (another default, or an interface
// re-created with a new index).
func (t *ebpfTunnel) setInterfacesLocked(def string) error {
	lan, err := t.ns.linkIndex(t.lan)
	if err != nil {
		return fmt.Errorf("the LAN interface %s: %w", t.lan, err)
	}
	wan, err := t.ns.linkIndex(def)
	if err != nil {
		return fmt.Errorf("the WAN interface %s: %w", def, err)
	}
	if def == t.wan && [2]int{lan, wan} == t.ifaces {
		return nil
	}
	if err := t.d.SetInterfaces(t.lan, def); err != nil {
		return err
	}
	if t.wan != "" && def != t.wan {
		t.log.Info("default WAN interface of the eBPF programs changed", "from", t.wan, "to", def)
	}
	t.wan, t.ifaces = def, [2]int{lan, wan}
	return nil
}

// What reconcileLocked could not do besides a hook (hookKey.String).
const (
	failDefault    = "default WAN"
	failInterfaces = "interfaces"
)

func (k hookKey) String() string { return k.prog + " on " + k.iface }

// logFailure logs what reconcileLocked could not do, once per distinct
// error.
func (t *ebpfTunnel) logFailure(what string, err error) {
	if t.failing[what] == err.Error() {
		return
	}
	t.failing[what] = err.Error()
	switch what {
	case failInterfaces:
		t.log.Error("cannot list the peers' interfaces; keeping the eBPF hooks as they are", "err", err)
	case failDefault:
		t.log.Warn("cannot choose the eBPF programs' default WAN interface", "err", err)
	default:
		t.log.Error("cannot hook the eBPF program; retrying", "hook", what, "err", err)
	}
}

// detachLocked removes the hooks and then their journal record.
func (t *ebpfTunnel) detachLocked() error {
	if t.att == nil {
		return nil
	}
	err := t.att.Detach()
	t.att = nil
	t.ifaces = [2]int{}
	if err != nil {
		return fmt.Errorf("detach the eBPF programs: %w (the journal keeps them for `tunnel-agent down`)", err)
	}
	return t.hooks.forget()
}

// plannedHooks are the clsact hooks of keys as they will be made.
func (t *ebpfTunnel) plannedHooks(keys []hookKey) []ebpf.Hook {
	if t.att.Mode() != ebpf.AttachClsact {
		return nil
	}
	var out []ebpf.Hook
	for _, k := range keys {
		idx, err := t.ns.linkIndex(k.iface)
		if err != nil || idx == 0 {
			continue // Hook will fail on it
		}
		out = append(out, ebpf.Hook{Interface: k.iface, Index: idx, Program: k.prog, Mode: ebpf.AttachClsact,
			Parent: ebpf.FilterParent, Priority: ebpf.FilterPriority, Handle: ebpf.FilterHandle})
	}
	return out
}

// clsactHooks are the hooks that outlive the process.
func clsactHooks(hooks []ebpf.Hook) []ebpf.Hook {
	var out []ebpf.Hook
	for _, h := range hooks {
		if h.Mode == ebpf.AttachClsact {
			out = append(out, h)
		}
	}
	return out
}

// onLearn is the engine's OnLearn: it must not block, so the endpoint
// waits in pending for applyLearned.
func (t *ebpfTunnel) onLearn(peer string, ep netip.AddrPort) {
	t.mu.Lock()
	t.pending[peer] = ep
	t.mu.Unlock()
	select {
	case t.learned <- struct{}{}:
	default:
	}
}

// applyLearned writes learned endpoints to the programs' peer map until
// ctx is done.
func (t *ebpfTunnel) applyLearned(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.learned:
		}
		t.mu.Lock()
		pending := t.pending
		t.pending = map[string]netip.AddrPort{}
		t.mu.Unlock()
		for peer, ep := range pending {
			if err := t.d.SetEndpoint(peer, ep); err != nil {
				t.log.Warn("cannot hand the learned endpoint to the eBPF programs; the peer's packets stay on the userspace path", "peer", peer, "endpoint", ep, "err", err)
			}
		}
		t.reconcile() // the peer may be behind another interface
	}
}

// currentEndpoints are the peers' endpoints as the engine has them now
// (learned ones included).
func (t *ebpfTunnel) currentEndpoints() map[string]netip.AddrPort {
	current := map[string]netip.AddrPort{}
	for _, p := range t.eng.Stats().Peers {
		current[p.Name] = p.CurrentEndpoint
	}
	return current
}

// refreshRoutes writes the peers again, which looks up the route to each
// endpoint (outer source address, interface): an entry whose route
// changed is rewritten, the others are left alone.
func (t *ebpfTunnel) refreshRoutes() {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if err := t.d.SetPeers(ebpfPeers(t.dcfg, t.currentEndpoints())); err != nil {
		t.log.Warn("cannot refresh the routes of the eBPF programs' peers", "err", err)
	}
}

// routeCheckEvery is how many hook checks pass between two route
// refreshes (a route lookup per peer: 130 ms for 4000 peers) while the
// kernel's route notifications are followed, and routePollEvery when
// they cannot be.
const (
	routeCheckEvery = 60
	routePollEvery  = 5
)

// hookRetryInterval is how long a hook that could not be made waits
// before the next attempt (each writes the journal, and in clsact mode
// adds and removes a qdisc).
const hookRetryInterval = 10 * time.Second

// hookCheckInterval is how often keepHooks looks at the hooks: netlink
// sends no link notification when a filter is removed, nor the bpf system
// call when a tcx link is detached.
const hookCheckInterval = time.Second

// keepHooks, until ctx is done, puts back hooks that someone removed (a
// filter deleted, a link detached) or that went with their interface
// (re-created), follows route changes towards the peers (at the next
// check after the kernel announces one, and every routeCheckEvery checks
// in case one was missed), and keeps wan_ingress on the interfaces the
// routes now take. Each repair is logged and counted (status
// ebpf.repairs).
func (t *ebpfTunnel) keepHooks(ctx context.Context) {
	tick := time.NewTicker(hookCheckInterval)
	defer tick.Stop()
	every := routeCheckEvery
	changed, err := t.eio.routeChanges(ctx.Done())
	if err != nil {
		t.log.Warn("cannot follow route changes; looking the peers' routes up every few seconds instead", "err", err)
		every = routePollEvery
	}
	dirty := false
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changed:
			if !ok {
				t.log.Warn("route change notifications stopped; looking the peers' routes up every few seconds instead")
				changed, every = nil, routePollEvery
			}
			dirty = true
			continue
		case <-tick.C:
			n++
		}
		refresh := dirty || n%every == 0
		dirty = false
		if refresh {
			t.refreshRoutes()
		}
		if t.reconcile() && !refresh {
			// A WAN interface re-created has a new index: look the
			// routes up now rather than at the next refresh.
			t.refreshRoutes()
			t.reconcile()
		}
	}
}

// reconcile is reconcileLocked, forgiving (what fails is logged and
// tried again), unless Run has detached for good. It says whether hooks
// were found gone.
func (t *ebpfTunnel) reconcile() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	gone, _ := t.reconcileLocked(false) // failures are logged
	return gone
}

// Run runs the exception engine until ctx is done, then detaches the
// programs (before the host configuration is reverted) and closes them.
func (t *ebpfTunnel) Run(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { t.applyLearned(lctx) })
	wg.Go(func() { t.keepHooks(lctx) })
	runErr := t.eng.Run(ctx)
	cancel()
	wg.Wait()
	t.mu.Lock()
	t.stopped = true
	err := t.detachLocked()
	t.mu.Unlock()
	return errors.Join(runErr, err, t.d.Close())
}

// Stats are the engine's counters with the programs' added: per-peer
// packets and bytes, and drops under the same names (the programs and
// the engine never count the same packet: what the programs pass up they
// do not count as dropped or forwarded, and what the engine gets it
// counts once).
func (t *ebpfTunnel) Stats() dataplane.Stats {
	st := t.eng.Stats()
	ps, err := t.d.Stats()
	if err != nil {
		return st
	}
	return addProgramStats(st, ps)
}

// addProgramStats adds the programs' counters to the engine's.
func addProgramStats(st dataplane.Stats, ps ebpf.Stats) dataplane.Stats {
	byName := map[string]ebpf.PeerStats{}
	for _, p := range ps.Peers {
		byName[p.Name] = p
	}
	for i := range st.Peers {
		p := byName[st.Peers[i].Name]
		st.Peers[i].RxPackets += p.RxPackets
		st.Peers[i].RxBytes += p.RxBytes
		st.Peers[i].TxPackets += p.TxPackets
		st.Peers[i].TxBytes += p.TxBytes
	}
	if st.Drops == nil {
		st.Drops = map[string]uint64{}
	}
	for r, n := range ps.Drops {
		st.Drops[r] += n
	}
	return st
}

func (t *ebpfTunnel) SetLANMTU(mtu int) error {
	if err := t.eng.SetLANMTU(mtu); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.pcfg
	c.LANMTU = mtu
	if err := t.d.SetConfig(c); err != nil {
		return err
	}
	t.pcfg = c
	return nil
}

// Reconfigure applies a changed site to the engine and then to the
// programs' maps, in place: peers that did not change keep their entries
// (no packet of theirs is lost). The capture prefixes are the programs'
// peer prefixes, already set.
func (t *ebpfTunnel) Reconfigure(site *config.Config, cfg dataplane.Config, _ []netip.Prefix) error {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	t.mu.Lock()
	err := fitsMaps(t.pcfg, cfg)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if err := t.eng.Reconfigure(cfg); err != nil {
		return err
	}
	t.dcfg = cfg
	if err := t.d.SetPeers(ebpfPeers(cfg, t.currentEndpoints())); err != nil {
		return fmt.Errorf("update the eBPF programs' peers: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := ebpfConfig(t.listen, cfg)
	c.MaxPeers, c.MaxPrefixes, c.MaxLocalPrefixes = t.pcfg.MaxPeers, t.pcfg.MaxPrefixes, t.pcfg.MaxLocalPrefixes // fixed at Load
	if err := t.d.SetConfig(c); err != nil {
		return fmt.Errorf("update the eBPF programs' settings: %w", err)
	}
	t.pcfg = c
	if site != nil {
		t.pickWAN = func() ([]string, error) { return defaultWANs(site, t.eio, t.ns) }
	}
	if !t.stopped {
		t.reconcileLocked(false) // new peers may be behind other interfaces; failures are logged
	}
	return nil
}

// RebindCapture hooks the programs again: the LAN interface was
// re-created, and its hook went with the old one.
func (t *ebpfTunnel) RebindCapture([]netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return dataplane.ErrStopped
	}
	clear(t.retryAt) // the interface is back: no waiting
	_, err := t.reconcileLocked(false)
	if t.att == nil || !t.att.Has(t.lan, ebpf.LANProgramName) {
		return fmt.Errorf("hook %s to the re-created %s: %w", ebpf.LANProgramName, t.lan, err)
	}
	return nil
}

func (t *ebpfTunnel) status() Status {
	st := Status{Listen: t.transport.LocalAddr(), Dataplane: t.Stats(), Transport: t.transport.status()}
	ps, err := t.d.Stats()
	t.mu.Lock()
	defer t.mu.Unlock()
	eb := &EBPFStatus{WAN: t.wan, Repairs: t.repairs, ExceptionReader: map[string]uint64{
		"too_big": t.exc.TooBig.Load(), "malformed": t.exc.Malformed.Load(), "segments_dropped": t.exc.SegmentsDropped()}}
	if err == nil {
		eb.ToUserspace, eb.Drops, eb.Carried = ps.ToUserspace, ps.Drops, ps.Peers
	}
	if t.att != nil {
		eb.Hooks = slices.Clone(t.att.Hooks) // encoded after the lock is released
	}
	st.EBPF = eb
	return st
}

// EBPFStatus is the eBPF dataplane's part of the status.
type EBPFStatus struct {
	// WAN is the default WAN interface: the interface of the route to
	// the first peer with an endpoint (or of the default route), where
	// outer packets leave when a peer's route names none.
	WAN string `json:"wan"`
	// Hooks are the programs' attachments (interface, program, tcx or
	// clsact): lan_ingress on the LAN, wan_ingress on every interface a
	// peer's route takes.
	Hooks []ebpf.Hook `json:"hooks"`
	// ToUserspace counts the packets the programs passed to the
	// userspace engine, by why; the engine's counters include what it
	// did with them.
	ToUserspace map[string]uint64 `json:"to_userspace"`
	// Drops are the programs' own drops (also summed into the
	// dataplane's drops).
	Drops map[string]uint64 `json:"drops"`
	// Carried are the packets and bytes the programs carried themselves,
	// per peer (included in the dataplane's per-peer counters, whose
	// rest went through the userspace engine).
	Carried []ebpf.PeerStats `json:"carried"`
	// Repairs counts hooks put back after the LAN interface was
	// re-created or a hook removed by someone else.
	Repairs uint64 `json:"repairs"`
	// ExceptionReader counts what the reader of the exceptions dropped
	// before the engine saw it: too_big (larger than the engine's
	// buffer), malformed records, segments_dropped (segments of a
	// super-packet beyond the engine's batch). The kernel's losses (the
	// buffer full) are the programs' exception_lost.
	ExceptionReader map[string]uint64 `json:"exception_reader"`
}

// siteHooks journals the programs' clsact hooks in the running site's
// host journal, under the watcher's lock (it reads the journal).
type siteHooks struct{ l *liveSite }

func (l *liveSite) hookJournal() hookJournal { return siteHooks{l} }

// record makes the journal's tc entries exactly hooks.
func (s siteHooks) record(hooks []ebpf.Hook) error {
	links := make([]string, len(hooks))
	specs := make([]netcfg.TCSpec, len(hooks))
	for i, h := range hooks {
		t := h.TCHook()
		links[i] = h.Interface
		specs[i] = netcfg.TCSpec{Index: t.Index, Name: t.Name, Parent: t.Parent, Priority: t.Priority, Handle: t.Handle,
			QdiscCreated: t.QdiscCreated}
	}
	var err error
	s.l.w.Locked(func() {
		if err = netcfg.ForgetTC(s.l.j); err == nil {
			err = netcfg.RecordTC(s.l.j, links, specs)
		}
	})
	return err
}

func (s siteHooks) forget() error {
	var err error
	s.l.w.Locked(func() { err = netcfg.ForgetTC(s.l.j) })
	return err
}

// tcNamedRemover removes a filter by name without a journal
// (netcfg.NetlinkHost.RemoveTCNamed).
type tcNamedRemover interface {
	RemoveTCNamed(link, name string, parent uint32, prio uint16, handle uint32) (bool, error)
}

// forceRemoveHooks is `down --force` for the eBPF dataplane: the clsact
// filters of the site's programs, found by priority, handle and name, on
// the LAN interface and on every interface that may have carried
// wan_ingress (those with an address or a default route, and the one `up`
// would take as the default WAN). tcx links need nothing (they went with
// the process); a clsact qdisc is left, since without the journal nothing
// says the agent made it.
func forceRemoveHooks(o *options, cfg *config.Config, h siteHost) (removed, left []string, err error) {
	tr, ok := h.(tcNamedRemover)
	if !ok {
		return nil, nil, fmt.Errorf("down --force: removing tc filters: %w on this host", errors.ErrUnsupported)
	}
	type hook struct{ link, prog string }
	hooks := []hook{{cfg.LAN.Interface, ebpf.LANProgramName}}
	var wans []string
	if eio, ok := o.sys.(ebpfIO); ok {
		if ws, werr := defaultWANs(cfg, eio, o.sys); werr == nil {
			wans = append(wans, ws...)
		}
	}
	if addrs, aerr := o.sys.addrs(); aerr == nil {
		for _, a := range addrs {
			wans = append(wans, a.Link)
		}
	} else {
		left = append(left, "wan_ingress filters on interfaces whose addresses could not be listed: "+aerr.Error())
	}
	if rs, rerr := o.sys.defaultRoutes(); rerr == nil {
		for _, r := range rs {
			wans = append(wans, r.Dev)
		}
	}
	slices.Sort(wans)
	for _, w := range slices.Compact(wans) {
		if w != "" && w != "lo" && w != cfg.LAN.Interface {
			hooks = append(hooks, hook{w, ebpf.WANProgramName})
		}
	}
	for _, k := range hooks {
		name := ebpf.FilterName(k.prog)
		found, rerr := tr.RemoveTCNamed(k.link, name, ebpf.FilterParent, ebpf.FilterPriority, ebpf.FilterHandle)
		switch {
		case rerr != nil:
			err = errors.Join(err, fmt.Errorf("remove tc filter %s from %s: %w", name, k.link, rerr))
		case found:
			removed = append(removed, fmt.Sprintf("tc filter %s on %s (its clsact qdisc is left: `tc qdisc del dev %s clsact` if nothing else uses it)", name, k.link, k.link))
		}
	}
	return removed, left, err
}
