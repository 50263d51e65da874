package wireguard

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"encoding/hex"
	"net/netip"

	"tunnel-agent/dataplane"
)

// Reconfigure applies cfg to the tunnel while it runs: the LAN side
// (peers, prefixes, ICMP sources, LAN MTU, relaying) through the Router,
// and the difference to the device through wireguard-go's configuration
// protocol: peers removed (remove=true) and added, and for a peer that
// stays (same public key) only what changed: preshared key, configured
// endpoint, persistent keepalive, allowed IPs (replace_allowed_ips). A
// peer that stays keeps its sessions, so its traffic goes on; a new
// private key makes every peer handshake again (wireguard-go expires the
// current sessions). An invalid cfg changes nothing; a change of
// ListenAddr or ListenPort is refused (the device's socket is bound
// once). The device's MTU stays the one New computed: a peer added with a
// larger inner MTU is held to it (lanSide).
func (w *Tunnel) Reconfigure(cfg Config) error {
	if err := checkWireGuard(cfg); err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	w.cfgMu.Lock()
	defer w.cfgMu.Unlock()
	if cfg.ListenPort != w.cfg.ListenPort || cfg.ListenAddr != w.cfg.ListenAddr {
		return fmt.Errorf("wireguard: listen %v → %v: the socket is bound once; restart for that",
			netip.AddrPortFrom(w.cfg.ListenAddr, w.cfg.ListenPort), netip.AddrPortFrom(cfg.ListenAddr, cfg.ListenPort))
	}
	if _, err := w.lan.Reconfigure(lanSide(cfg.LAN, w.tun.mtu), w.tun.pause); err != nil {
		return err
	}
	if dev := w.dev.Load(); dev != nil {
		if err := dev.IpcSet(uapiDiff(w.cfg, cfg)); err != nil {
			_, back := w.lan.Reconfigure(lanSide(w.cfg.LAN, w.tun.mtu), w.tun.pause)
			return errors.Join(fmt.Errorf("wireguard: reconfigure the device: %w", err), back)
		}
	}
	w.cfg = cfg
	w.setIdentity(cfg)
	return nil
}

// SetLANMTU hands the tunnel the LAN interface's current MTU.
func (w *Tunnel) SetLANMTU(mtu int) error { return w.lan.SetLANMTU(mtu) }

// ReplaceCapture makes the running tunnel read from c (a capture re-opened
// on a re-created LAN interface) and closes the previous one. After Run
// has stopped it closes c and returns dataplane.ErrStopped.
func (w *Tunnel) ReplaceCapture(c dataplane.Capture) error { return w.tun.capture.Replace(c) }

// uapiDiff renders, in wireguard-go's configuration protocol, what turns
// the device configured by old into one configured by nw. Peers are
// matched by public key.
func uapiDiff(old, nw Config) string {
	var b strings.Builder
	if nw.PrivateKey != old.PrivateKey {
		fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(nw.PrivateKey[:]))
	}
	keep := make(map[Key]bool, len(nw.PeerKeys))
	for _, k := range nw.PeerKeys {
		keep[k.Public] = true
	}
	was := make(map[Key]int, len(old.PeerKeys))
	for i, k := range old.PeerKeys {
		was[k.Public] = i
		if !keep[k.Public] {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hex.EncodeToString(k.Public[:]))
		}
	}
	for i, p := range nw.LAN.Peers {
		k := nw.PeerKeys[i]
		j, ok := was[k.Public]
		if !ok {
			writePeer(&b, p, k)
			continue
		}
		writePeerChange(&b, old.LAN.Peers[j], p, old.PeerKeys[j], k)
	}
	return b.String()
}

// writePeerChange renders what changed for a peer the device has (o, ok)
// and keeps (p, k), nothing when nothing did. An endpoint no longer
// configured is left as the device has it (the protocol cannot clear it,
// and the peer roams anyway).
func writePeerChange(b *strings.Builder, o, p dataplane.PeerConfig, ok, k PeerKeys) {
	var c strings.Builder
	if k.Preshared != ok.Preshared { // all zeros clears it
		fmt.Fprintf(&c, "preshared_key=%s\n", hex.EncodeToString(k.Preshared[:]))
	}
	if ep := uapiEndpoint(p); ep.IsValid() && ep != uapiEndpoint(o) {
		fmt.Fprintf(&c, "endpoint=%s\n", ep)
	}
	if ka := keepaliveSeconds(p); ka != keepaliveSeconds(o) {
		fmt.Fprintf(&c, "persistent_keepalive_interval=%d\n", ka)
	}
	if !samePrefixes(o.Prefixes, p.Prefixes) {
		c.WriteString("replace_allowed_ips=true\n")
		writeAllowedIPs(&c, p.Prefixes)
	}
	if c.Len() > 0 {
		fmt.Fprintf(b, "public_key=%s\n%s", hex.EncodeToString(k.Public[:]), c.String())
	}
}

// samePrefixes reports whether a and b are the same set of networks.
func samePrefixes(a, b []netip.Prefix) bool {
	norm := func(ps []netip.Prefix) []netip.Prefix {
		out := make([]netip.Prefix, len(ps))
		for i, p := range ps {
			out[i] = p.Masked()
		}
		slices.SortFunc(out, netip.Prefix.Compare)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}
