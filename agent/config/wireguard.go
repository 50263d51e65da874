package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"gopkg.in/yaml.v3"

	"tunnel-agent/internal/fstrust"
)

// TunnelMode is tunnel.mode; the zero value is plain mode.
type TunnelMode string

// Tunnel modes.
const (
	ModePlain     TunnelMode = ""          // "plain": the tutorial's UDP encapsulation, no crypto
	ModeWireGuard TunnelMode = "wireguard" // the WireGuard protocol, interoperable with wg peers
)

// Key is a WireGuard key (Curve25519 private or public, or preshared),
// 32 raw bytes, as `wg genkey`/`wg pubkey` print them in base64.
type Key [32]byte

// IsZero reports whether k is unset.
func (k Key) IsZero() bool { return k == Key{} }

// WireGuardTunnel is the tunnel's wireguard-mode settings.
type WireGuardTunnel struct {
	// PrivateKeyFile holds the key as `wg genkey` writes it; a relative
	// path is relative to the config file's directory.
	PrivateKeyFile string
	// PrivateKey is read from PrivateKeyFile by LoadKeys (up, check).
	PrivateKey Key
}

// WireGuardPeer is a peer's wireguard-mode settings.
type WireGuardPeer struct {
	PublicKey        Key
	PresharedKeyFile string // optional; relative to the config file's directory
	PresharedKey     Key    // read by LoadKeys; zero: none
}

// tunnelWireGuard reads tunnel.mode and tunnel.private_key_file.
func (c converter) tunnelWireGuard(path string, f *fileTunnel) (TunnelMode, WireGuardTunnel) {
	return parseField(c, path+".mode", &f.Mode, false, parseMode), WireGuardTunnel{PrivateKeyFile: parseField(c, path+".private_key_file", &f.PrivateKeyFile, false, nonEmpty)}
}

// peerWireGuard reads a peer's public_key and preshared_key_file.
func (c converter) peerWireGuard(path string, f *filePeer) WireGuardPeer {
	return WireGuardPeer{
		PublicKey:        parseField(c, path+".public_key", &f.PublicKey, false, parseKey),
		PresharedKeyFile: parseField(c, path+".preshared_key_file", &f.PresharedKeyFile, false, nonEmpty),
	}
}

func parseMode(s string) (TunnelMode, error) {
	switch s {
	case "plain":
		return ModePlain, nil
	case string(ModeWireGuard):
		return ModeWireGuard, nil
	}
	return "", fmt.Errorf("unknown mode %q: want plain or wireguard", s)
}

// parseKey reads a base64 Curve25519 key as `wg genkey`/`wg pubkey` print it.
func parseKey(s string) (Key, error) {
	k, err := wgtypes.ParseKey(strings.TrimSpace(s))
	if err != nil {
		return Key{}, fmt.Errorf("invalid key: want 44 characters of base64 as `tunnel-agent pubkey` or `wg pubkey` print it (%v)", err)
	}
	return Key(k), nil
}

// wireguard checks the wireguard-mode fields against the mode.
func (v validator) wireguard() {
	t := v.cfg.Tunnel
	if t.Mode != ModeWireGuard {
		v.plainOnly()
		return
	}
	if t.WireGuard.PrivateKeyFile == "" && !v.ps.hasMatch(reExact("tunnel.private_key_file")) {
		v.ps.addf("tunnel.private_key_file", nil, "required in wireguard mode: a file made with `tunnel-agent genkey > FILE` (mode 0600)")
	}
	v.peerKeys()
}

// peerKeys requires a unique public key per peer.
func (v validator) peerKeys() {
	keys := seen{}
	for i, p := range v.cfg.Tunnel.Peers {
		path := fmt.Sprintf("tunnel.peers[%d].public_key", i)
		k := p.WireGuard.PublicKey
		switch {
		case v.ps.hasMatch(reExact(path)):
		case k.IsZero():
			v.ps.addf(path, nil, "required in wireguard mode: the peer's public key (`tunnel-agent pubkey < its.key`)")
		default:
			if first := keys.dup(string(k[:]), path); first != "" {
				v.ps.addf(path, nil, "the same key is also %s; each peer needs its own", first)
			}
		}
	}
}

// plainOnly reports wireguard-mode fields in a plain-mode file.
func (v validator) plainOnly() {
	const msg = "only used in wireguard mode; set tunnel.mode: wireguard or remove it"
	if v.cfg.Tunnel.WireGuard.PrivateKeyFile != "" {
		v.ps.addf("tunnel.private_key_file", nil, msg)
	}
	for i, p := range v.cfg.Tunnel.Peers {
		if !p.WireGuard.PublicKey.IsZero() {
			v.ps.addf(fmt.Sprintf("tunnel.peers[%d].public_key", i), nil, msg)
		}
		if p.WireGuard.PresharedKeyFile != "" {
			v.ps.addf(fmt.Sprintf("tunnel.peers[%d].preshared_key_file", i), nil, msg)
		}
	}
}

// reExact matches exactly path (for problems.hasMatch).
func reExact(path string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.QuoteMeta(path) + "$")
}

// LoadKeys reads the key files of a wireguard-mode site (a no-op in plain
// mode): `up` and `check` call it, `status` and `down` do not need the
// keys. A key file must be readable by its owner only and hold one key.
// Problems come back as a *Error naming file:line:field.
func LoadKeys(cfg *Config, file string) error {
	if cfg.Tunnel.Mode != ModeWireGuard {
		return nil
	}
	dir := filepath.Dir(file)
	ps := &problems{}
	var err error
	wg := &cfg.Tunnel.WireGuard
	if wg.PrivateKey, err = readKeyFile(dir, wg.PrivateKeyFile); err != nil {
		ps.add("tunnel.private_key_file", nil, err)
	}
	for i := range cfg.Tunnel.Peers {
		p := &cfg.Tunnel.Peers[i].WireGuard
		path := fmt.Sprintf("tunnel.peers[%d]", i)
		if p.PresharedKeyFile != "" {
			if p.PresharedKey, err = readKeyFile(dir, p.PresharedKeyFile); err != nil {
				ps.add(path+".preshared_key_file", nil, err)
			}
		}
		if !wg.PrivateKey.IsZero() && p.PublicKey == publicKey(wg.PrivateKey) {
			ps.addf(path+".public_key", nil, "this is the site's own public key (from tunnel.private_key_file); give the peer's")
		}
	}
	return fileProblems(ps, file)
}

// fileProblems places the problems found after Load in the file
// (read again for their lines), or returns nil.
func fileProblems(ps *problems, file string) error {
	if len(ps.list) == 0 {
		return nil
	}
	var doc *yaml.Node
	if data, err := readConfigFile(file); err == nil {
		doc = &yaml.Node{}
		_ = yaml.Unmarshal(data, doc)
	}
	return &Error{Errors: ps.fieldErrors(file, doc)}
}

// readKeyFile reads one base64 key from name (relative to dir). The file
// is opened without following a symbolic link and without blocking (a
// FIFO would hang `check` and `up`), and refused unless it is a regular
// file owned by the agent's user that group and others cannot access.
func readKeyFile(dir, name string) (Key, error) {
	var k Key
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	f, err := fstrust.OpenFile("key file", path, os.O_RDONLY, 0, 0o077)
	if errors.Is(err, fstrust.ErrUntrusted) {
		return k, fmt.Errorf("%w; make it with `(umask 077; tunnel-agent genkey > %s)` or fix it with `chown` and `chmod 600`", err, path)
	}
	if err != nil {
		return k, fmt.Errorf("cannot read key file %s: %w", path, pathCause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return k, fmt.Errorf("cannot read key file %s: %w", path, pathCause(err))
	}
	if k, err = parseKey(string(data)); err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// publicKey is the public key of a private key.
func publicKey(priv Key) Key {
	return Key(wgtypes.Key(priv).PublicKey())
}
