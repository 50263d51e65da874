package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Config is what the programs need besides the peers. Load takes it whole;
// SetConfig changes everything but the sizes on a running dataplane.
type Config struct {
	// ListenPort is the tunnel's UDP port: the outer source port of every
	// datagram sent and the destination port of those decapsulated.
	ListenPort uint16
	// ListenAddr, when valid and specified, is the only outer destination
	// decapsulated (the agent's listen address); zero or unspecified: any.
	ListenAddr netip.Addr
	// LocalPrefixes are the networks behind this gateway: the only inner
	// destinations delivered from the tunnel.
	LocalPrefixes []netip.Prefix
	// Relay makes this gateway a hub: a packet from one peer for another
	// peer's prefixes is sent on to that peer.
	Relay bool
	// LANMTU is the largest inner packet the program delivers to the LAN;
	// larger ones go to the userspace path. 0: the LAN interface's MTU
	// when Attach ran.
	LANMTU int
	// HostAddrs are this host's own addresses inside LocalPrefixes
	// (normally the LAN addresses): packets to them are handed to the
	// local stack instead of being sent out of the LAN.
	HostAddrs []netip.Addr

	// Sizes of the maps, fixed at Load; 0 means the default.
	MaxPeers         int // default 256
	MaxPrefixes      int // per family, over all peers; default 4096
	MaxLocalPrefixes int // per family; default 1024
}

const (
	defaultMaxPeers    = 256
	defaultMaxPrefixes = 4096
	defaultMaxLocal    = 1024
	defaultPathMTU     = 1500
)

// Dataplane is a loaded set of programs and maps. Create it with Load, fill
// it with SetPeers, hook it with Attach, and Close it when done. Its
// methods are safe for concurrent use.
type Dataplane struct {
	objs tunnelObjects

	mu       sync.Mutex
	cfg      Config
	ifaces   ifaceIndexes
	peers    map[string]*peerState
	free     []uint32 // unused peer ids, highest first
	local    map[netip.Prefix]bool
	hosts    map[netip.Addr]bool
	exc      *Exceptions
	closed   bool
	maxPeers int
}

// ifaceIndexes are the interfaces the programs work with, set by Attach.
type ifaceIndexes struct{ lan, wan, lanMTU int }

// Load checks cfg, removes the memlock limit where the kernel needs it,
// and loads the programs and their maps. It attaches nothing.
func Load(cfg Config) (*Dataplane, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	spec, err := loadTunnel()
	if err != nil {
		return nil, fmt.Errorf("ebpf: reading the compiled programs: %w", err)
	}
	d := &Dataplane{cfg: cfg, peers: map[string]*peerState{}, local: map[netip.Prefix]bool{}, hosts: map[netip.Addr]bool{}}
	d.maxPeers = orDefault(cfg.MaxPeers, defaultMaxPeers)
	sizeMaps(spec, d.maxPeers, orDefault(cfg.MaxPrefixes, defaultMaxPrefixes), orDefault(cfg.MaxLocalPrefixes, defaultMaxLocal))
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("ebpf: %w", permissionHint(err))
	}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("ebpf: loading the tc programs: %w", permissionHint(err))
	}
	for id := d.maxPeers - 1; id >= 0; id-- {
		d.free = append(d.free, uint32(id))
	}
	if err := d.applyConfig(cfg); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	return d, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// sizeMaps sets the map sizes of spec from the configured limits.
func sizeMaps(spec *cebpf.CollectionSpec, peers, prefixes, local int) {
	for name, n := range map[string]int{
		tunnelMapPeers: peers, tunnelMapTraffic: peers, tunnelMapEndpoints: peers,
		tunnelMapRoutes4: prefixes, tunnelMapRoutes6: prefixes,
		tunnelMapLocal4: local, tunnelMapLocal6: local, tunnelMapHostAddrs: local,
	} {
		spec.Maps[name].MaxEntries = uint32(n)
	}
}

// permissionHint adds what a permission error usually means here.
func permissionHint(err error) error {
	if errors.Is(err, errPerm) {
		return fmt.Errorf("%w (needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN on kernels before 5.8)", err)
	}
	return err
}

func checkConfig(cfg Config) error {
	if cfg.ListenPort == 0 {
		return errors.New("listen port 0")
	}
	if cfg.LANMTU < 0 || cfg.LANMTU > 0xffff {
		return fmt.Errorf("LAN MTU %d out of range", cfg.LANMTU)
	}
	for _, p := range cfg.LocalPrefixes {
		if !p.IsValid() {
			return fmt.Errorf("invalid local prefix %v", p)
		}
	}
	for _, a := range cfg.HostAddrs {
		if !a.IsValid() {
			return errors.New("invalid host address")
		}
	}
	return nil
}

// SetConfig changes the settings and the local prefixes of a running
// dataplane in place; the map sizes of cfg are ignored. Local prefixes
// are added before the ones no longer wanted are removed.
func (d *Dataplane) SetConfig(cfg Config) error {
	if err := checkConfig(cfg); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if err := d.applyConfig(cfg); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

// applyConfig writes cfg to the maps; d.mu held (or d not yet shared).
func (d *Dataplane) applyConfig(cfg Config) error {
	if err := d.writeSettings(cfg, d.ifaces); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for _, p := range cfg.LocalPrefixes {
		want[p.Masked()] = true
	}
	for p := range want {
		if !d.local[p] {
			if err := lpmPut(d.objs.Local4, d.objs.Local6, p, uint8(1)); err != nil {
				return fmt.Errorf("adding local prefix %v: %w", p, err)
			}
			d.local[p] = true
		}
	}
	for p := range d.local {
		if !want[p] {
			if err := lpmDelete(d.objs.Local4, d.objs.Local6, p); err != nil {
				return fmt.Errorf("removing local prefix %v: %w", p, err)
			}
			delete(d.local, p)
		}
	}
	if err := d.applyHostAddrs(cfg.HostAddrs); err != nil {
		return err
	}
	d.cfg = cfg
	return nil
}

// applyHostAddrs makes the host_addrs map hold exactly addrs.
func (d *Dataplane) applyHostAddrs(addrs []netip.Addr) error {
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	for a := range want {
		if !d.hosts[a] {
			if err := d.objs.HostAddrs.Put(hostKey(a), uint8(1)); err != nil {
				return fmt.Errorf("adding host address %v: %w", a, err)
			}
			d.hosts[a] = true
		}
	}
	for a := range d.hosts {
		if !want[a] {
			if err := deleteIgnoringMissing(d.objs.HostAddrs, hostKey(a)); err != nil {
				return fmt.Errorf("removing host address %v: %w", a, err)
			}
			delete(d.hosts, a)
		}
	}
	return nil
}

func hostKey(a netip.Addr) tunnelEndpointKey {
	var k tunnelEndpointKey
	k.Family, k.Addr = addrBytes(a)
	return k
}

// writeSettings writes the config map's only entry.
func (d *Dataplane) writeSettings(cfg Config, ifs ifaceIndexes) error {
	s := tunnelSettings{
		ListenPort: htons(cfg.ListenPort),
		LanIfindex: uint32(ifs.lan),
		WanIfindex: uint32(ifs.wan),
		LanMtu:     uint16(orDefault(cfg.LANMTU, ifs.lanMTU)),
	}
	if cfg.Relay {
		s.Relay = 1
	}
	if a := cfg.ListenAddr.Unmap(); a.IsValid() && !a.IsUnspecified() {
		s.ListenFamily, s.ListenAddr = addrBytes(a)
	}
	if err := d.objs.Config.Put(uint32(0), &s); err != nil {
		return fmt.Errorf("writing settings: %w", err)
	}
	return nil
}

// setInterfaces writes the interfaces to the config map.
func (d *Dataplane) setInterfaces(ifs ifaceIndexes) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writeSettings(d.cfg, ifs); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	d.ifaces = ifs
	return nil
}

// Close closes the exception reader, the programs and the maps. Links
// made by Attach hold their own references: detach them first.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.exc != nil {
		errs = append(errs, d.exc.Close())
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// LANProgram and WANProgram expose the programs, for tests and for
// callers that attach them by other means.
func (d *Dataplane) LANProgram() *cebpf.Program { return d.objs.LanIngress }

// WANProgram: see LANProgram.
func (d *Dataplane) WANProgram() *cebpf.Program { return d.objs.WanIngress }

// addrBytes is the family (4 or 6) and 16-byte form of a (IPv4 first).
func addrBytes(a netip.Addr) (uint8, [16]byte) {
	var b [16]byte
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return 4, b
	}
	return 6, a.As16()
}

// htons converts a port to network byte order as the program compares it
// (the map stores the raw bytes).
func htons(v uint16) uint16 {
	b := [2]byte{byte(v >> 8), byte(v)}
	return nativeEndian.Uint16(b[:])
}
