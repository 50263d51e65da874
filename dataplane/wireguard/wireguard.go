// Package wireguard is the tunnel's WireGuard mode: the WireGuard protocol
// (Noise IKpsk2 handshake, ChaCha20-Poly1305, replay window, rekeying,
// cookies under load, authenticated roaming) without a tunnel interface,
// over the same capture and injection as plain mode.
//
// The protocol is wireguard-go's (golang.zx2c4.com/wireguard/device), used
// as a library: nothing cryptographic is implemented here. In place of a
// TUN interface the device gets wgTUN (tun.go), a tun.Device over a
// dataplane.Capture and a dataplane.Injector that keeps every LAN-side
// rule of plain mode through a dataplane.Router, the type plain mode's
// Engine uses for its LAN side:
//
//	Capture.ReadBatch → Outbound.Forward (parse, trim, route lookup, router
//	hop: TTL and ICMP time exceeded, DF and ICMP fragmentation needed with
//	the path MTU lowered by WireGuard's 32 bytes) → wireguard-go (cryptokey
//	routing, encryption, UDP through its own bind)
//
//	wireguard-go (decryption, replay window, AllowedIPs source check) →
//	Inbound.Deliver (header, source owner, destination local, LAN MTU) →
//	Injector
//
//	Inbound.Deliver → relay queue (relayq.go: a packet for another peer
//	with LAN.Relay, after the router hop; an ICMP error for the sender) →
//	wgTUN.Read, ahead of captured packets → wireguard-go (encryption to
//	the peer whose AllowedIPs hold the destination)
//
// Reconfigure (reconfig.go) changes a running tunnel: the Router's tables,
// then only the difference to the device, through wireguard-go's
// configuration protocol, so that peers that stay keep their sessions.
//
// The transport is the project's UDP socket (package udp) as wireguard-go's
// conn.Bind (bind_udp.go), bound to the address `listen` names, wrapped
// (bind.go) to count every received datagram by outcome and to drop what
// is no WireGuard message, replays and handshakes beyond a bound. How
// many packets are inside wireguard-go at once is bounded (flight.go):
// its buffers are 64 KiB each.
package wireguard

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/device"

	"tunnel-agent/dataplane"
)

// Key is a Curve25519 key or a preshared key, 32 raw bytes.
type Key [32]byte

// IsZero reports whether k is all zeros (no preshared key).
func (k Key) IsZero() bool { return k == Key{} }

// WireGuard overhead on top of the outer IP and UDP headers: the 16-byte
// transport header and the 16-byte Poly1305 tag. Padding to 16 bytes is
// capped at the MTU the device reports, so it never adds to this.
const wgOverhead = device.MessageTransportHeaderSize + 16

// PeerKeys are one peer's keys.
type PeerKeys struct {
	Public    Key
	Preshared Key // zero: none
}

// Config configures a WireGuard-mode tunnel.
type Config struct {
	// LAN is the LAN side, exactly as plain mode takes it: peers (names,
	// prefixes, endpoints, keepalives, path MTUs), local prefixes, ICMP
	// source, logger, batch size. A peer's Endpoint is only the initial
	// one: WireGuard moves it to wherever authenticated packets come from.
	LAN        dataplane.Config
	PrivateKey Key
	// ListenAddr and ListenPort are the UDP socket's address (the zero
	// Addr: every address of both families, as [::]) and port.
	ListenAddr netip.Addr
	ListenPort uint16
	// Listen opens the UDP socket (nil: package udp's, default offloads);
	// the agent passes its own, with the offloads it chose, and its tests
	// an in-memory one.
	Listen ListenFunc
	// PeerKeys holds the keys of LAN.Peers[i] at index i.
	PeerKeys []PeerKeys
}

// Tunnel is a WireGuard-mode tunnel. Create it with New and start it with
// Run.
type Tunnel struct {
	lan  *dataplane.Router // LAN-side tables, checks, counters, drop log, injector
	tun  *wgTUN
	bind *countingBind
	ctr  *wgCounters
	log  *slog.Logger

	// cfgMu serialises Run's start of the device and Reconfigure: cfg is
	// what the device runs (or will, before Run).
	cfgMu sync.Mutex
	cfg   Config

	idMu  sync.RWMutex // guards what follows (Reconfigure vs. Stats)
	keys  map[Key]int  // peer public keys: index in cfg.LAN.Peers
	names []string     // peer names, by index
	pub   string       // our public key, base64

	openOnce sync.Once
	openErr  error
	started  atomic.Bool                   // Run was called
	dev      atomic.Pointer[device.Device] // set by Run
	up       chan struct{}                 // closed once the device is up
}

// New checks cfg and returns a tunnel over the capture and the
// injector, which Run will own (and close when it stops).
func New(cfg Config, c dataplane.Capture, inj dataplane.Injector) (*Tunnel, error) {
	if c == nil || inj == nil {
		return nil, errors.New("wireguard: nil Capture or Injector")
	}
	if err := checkWireGuard(cfg); err != nil {
		return nil, fmt.Errorf("wireguard: %w", err)
	}
	mtu := deviceMTU(cfg.LAN.Peers)
	lan, err := dataplane.NewRouter(lanSide(cfg.LAN, mtu), inj)
	if err != nil {
		return nil, err
	}
	ctr := newWGCounters()
	bind := newUDPBind(cmp.Or(cfg.ListenAddr, netip.IPv6Unspecified()), cfg.Listen)
	w := &Tunnel{lan: lan, ctr: ctr, bind: &countingBind{Bind: bind, ctr: ctr},
		log: cfg.LAN.Logger, cfg: cfg, up: make(chan struct{})}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.setIdentity(cfg)
	w.tun = newWGTUN(lan, ctr, c, inj, mtu)
	return w, nil
}

// setIdentity records the keys and names of cfg for Stats.
func (w *Tunnel) setIdentity(cfg Config) {
	keys := make(map[Key]int, len(cfg.PeerKeys))
	for i, k := range cfg.PeerKeys {
		keys[k.Public] = i
	}
	names := make([]string, len(cfg.LAN.Peers))
	for i, p := range cfg.LAN.Peers {
		names[i] = p.Name
	}
	var pub string
	if k, err := curve25519.X25519(cfg.PrivateKey[:], curve25519.Basepoint); err == nil {
		pub = base64.StdEncoding.EncodeToString(k)
	}
	w.idMu.Lock()
	defer w.idMu.Unlock()
	w.keys, w.names, w.pub = keys, names, pub
}

// checkWireGuard checks what the Router does not: keys.
func checkWireGuard(cfg Config) error {
	if cfg.PrivateKey.IsZero() {
		return errors.New("no private key")
	}
	if len(cfg.PeerKeys) != len(cfg.LAN.Peers) {
		return fmt.Errorf("%d peer keys for %d peers", len(cfg.PeerKeys), len(cfg.LAN.Peers))
	}
	seen := make(map[Key]bool, len(cfg.PeerKeys))
	for i, k := range cfg.PeerKeys {
		if k.Public.IsZero() || seen[k.Public] {
			return fmt.Errorf("peer %d: public key missing or not unique", i)
		}
		seen[k.Public] = true
	}
	return nil
}

// lanSide is cfg for the Router's checks on a device whose MTU is mtu:
// each peer's path MTU set so that the Router's hop check (path MTU less
// the outer headers of the configured endpoint's family, IPv4's without
// one) yields the largest inner packet that stays within the peer's path
// once wireguard-go has padded it. wireguard-go pads to the next multiple
// of 16 bytes, capped at the device's MTU only: towards a peer whose
// inner MTU (innerMTU) is below the device's, the limit is rounded down to
// a multiple of 16; it is never above the device's MTU.
func lanSide(cfg dataplane.Config, mtu int) dataplane.Config {
	peers := make([]dataplane.PeerConfig, len(cfg.Peers))
	for i, p := range cfg.Peers {
		limit := min(innerMTU(p), mtu)
		if limit < mtu {
			limit &^= 15
		}
		routerOuter := outerIPv4UDP // the Router's assumption without an endpoint
		if p.Endpoint.IsValid() && !p.Endpoint.Addr().Is4() {
			routerOuter = outerIPv6UDP
		}
		p.PathMTU = limit + routerOuter
		p.Keepalive = 0 // WireGuard's persistent keepalive does this
		peers[i] = p
	}
	cfg.Peers = peers
	return cfg
}

// uapiConfig renders cfg in wireguard-go's configuration protocol.
func uapiConfig(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", hex.EncodeToString(cfg.PrivateKey[:]), cfg.ListenPort)
	for i, p := range cfg.LAN.Peers {
		writePeer(&b, p, cfg.PeerKeys[i])
	}
	return b.String()
}

// writePeer renders a peer the device does not have yet.
func writePeer(b *strings.Builder, p dataplane.PeerConfig, k PeerKeys) {
	fmt.Fprintf(b, "public_key=%s\n", hex.EncodeToString(k.Public[:]))
	if !k.Preshared.IsZero() {
		fmt.Fprintf(b, "preshared_key=%s\n", hex.EncodeToString(k.Preshared[:]))
	}
	if ep := uapiEndpoint(p); ep.IsValid() {
		fmt.Fprintf(b, "endpoint=%s\n", ep)
	}
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", keepaliveSeconds(p))
	writeAllowedIPs(b, p.Prefixes)
}

func writeAllowedIPs(b *strings.Builder, prefixes []netip.Prefix) {
	for _, pfx := range prefixes {
		fmt.Fprintf(b, "allowed_ip=%s\n", pfx.Masked())
	}
}

// uapiEndpoint is the peer's configured endpoint as the device takes it
// (invalid: none).
func uapiEndpoint(p dataplane.PeerConfig) netip.AddrPort {
	return netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())
}

// keepaliveSeconds is the peer's keepalive interval in whole seconds,
// rounded up (0: none).
func keepaliveSeconds(p dataplane.PeerConfig) int {
	return int((p.Keepalive + 999_999_999) / 1e9)
}

// Open creates the WireGuard device, configures it and brings it up,
// which binds its UDP port: from then on the tunnel answers handshakes
// and moves packets, and ListenPort is known. Run calls it if the caller
// did not; a failed Open has closed the I/O objects. Only the first call
// does anything.
func (w *Tunnel) Open() error {
	w.openOnce.Do(func() {
		dev := device.NewDevice(w.tun, w.bind, w.ctr.logger(w.log))
		if w.openErr = w.start(dev); w.openErr != nil {
			dev.Close()
			return
		}
		close(w.up)
	})
	return w.openErr
}

// Run opens the device if Open was not called, and moves packets until
// ctx is done (then it returns nil) or the device stops on its own
// (capture or bind failure: then it returns an error). It closes the I/O
// objects before returning. Run may be called only once.
func (w *Tunnel) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("wireguard: Run called twice")
	}
	if err := w.Open(); err != nil {
		return err
	}
	dev := w.dev.Load()
	defer dev.Close()
	select {
	case <-ctx.Done():
		return nil
	case <-dev.Wait():
		return errors.New("wireguard: device stopped (capture, injection or UDP socket failed; see the log)")
	}
}

// start configures dev as cfg says and brings it up; from then on
// Reconfigure changes it.
func (w *Tunnel) start(dev *device.Device) error {
	w.cfgMu.Lock()
	defer w.cfgMu.Unlock()
	if err := dev.IpcSet(uapiConfig(w.cfg)); err != nil {
		return fmt.Errorf("wireguard: configure the device: %w", err)
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("wireguard: start the device (bind port): %w", err)
	}
	w.dev.Store(dev)
	return nil
}

// ListenPort is the UDP port the device is bound to (0 before Run).
func (w *Tunnel) ListenPort() uint16 {
	return uint16(w.bind.port.Load())
}

// The outer IP and UDP headers around a WireGuard message.
const (
	outerIPv4UDP = 20 + 8
	outerIPv6UDP = 40 + 8
)

// innerMTU is the largest inner packet the path towards p carries: its
// path MTU less WireGuard's overhead and the outer headers, IPv6's unless
// its configured endpoint is IPv4 (a socket on [::] learns endpoints of
// either family). 1440 on a 1500-byte IPv4 path, 1420 on
// an IPv6 one.
func innerMTU(p dataplane.PeerConfig) int {
	outer := outerIPv6UDP
	if p.Endpoint.Addr().Unmap().Is4() {
		outer = outerIPv4UDP
	}
	return cmp.Or(p.PathMTU, dataplane.DefaultPathMTU) - wgOverhead - outer
}

// deviceMTU is the largest inner packet over every peer's path, the
// device's MTU, which wireguard-go pads up to (lanSide keeps the padding
// within each peer's path).
func deviceMTU(peers []dataplane.PeerConfig) int {
	mtu := 0
	for _, p := range peers {
		mtu = max(mtu, innerMTU(p))
	}
	return mtu
}
