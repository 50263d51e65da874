package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgSiteYAML is a wireguard-mode site; extra is appended to the peer.
func wgSiteYAML(pub, extra string) string {
	return `site: s
lan:
  interface: eth0
tunnel:
  mode: wireguard
  listen: 0.0.0.0:51820
  private_key_file: site.key
  peers:
    - name: p
      public_key: ` + pub + `
      prefixes: [10.1.0.0/24]
` + extra
}

func writeKey(t *testing.T, dir, name string, k wgtypes.Key, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(k.String()+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
		t.Fatal(err)
	}
}

func TestWireGuardConfigLoadsKeys(t *testing.T) {
	dir := t.TempDir()
	priv, _ := wgtypes.GeneratePrivateKey()
	peer, _ := wgtypes.GeneratePrivateKey()
	psk, _ := wgtypes.GenerateKey()
	writeKey(t, dir, "site.key", priv, 0o600)
	writeKey(t, dir, "p.psk", psk, 0o400)
	file := filepath.Join(dir, "site.yaml")
	os.WriteFile(file, []byte(wgSiteYAML(peer.PublicKey().String(), "      preshared_key_file: p.psk\n")), 0o644)
	cfg, err := Load(file, cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadKeys(cfg, file); err != nil {
		t.Fatal(err)
	}
	p := cfg.Tunnel.Peers[0].WireGuard
	if cfg.Tunnel.Mode != ModeWireGuard || cfg.Tunnel.WireGuard.PrivateKey != [32]byte(priv) ||
		p.PublicKey != [32]byte(peer.PublicKey()) || p.PresharedKey != [32]byte(psk) {
		t.Errorf("keys not loaded: %+v %+v", cfg.Tunnel.WireGuard, p)
	}
}

func TestWireGuardKeyFileRefusedWhenReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	priv, _ := wgtypes.GeneratePrivateKey()
	peer, _ := wgtypes.GeneratePrivateKey()
	writeKey(t, dir, "site.key", priv, 0o640)
	file := filepath.Join(dir, "site.yaml")
	os.WriteFile(file, []byte(wgSiteYAML(peer.PublicKey().String(), "")), 0o644)
	cfg, err := Load(file, cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	err = LoadKeys(cfg, file)
	var ce *Error
	if !errors.As(err, &ce) || ce.Errors[0].Line != 7 || ce.Errors[0].Field != "tunnel.private_key_file" ||
		!strings.Contains(err.Error(), "mode 0640") {
		t.Fatalf("want a file:line:field error about mode 0640, got %v", err)
	}
}

// TestWireGuardKeyFileRefusals: a key file that is a FIFO (which made
// `check` and `up` hang), a symbolic link, or another user's file is
// refused at once, with the field and line of the file.
func TestWireGuardKeyFileRefusals(t *testing.T) {
	peer, _ := wgtypes.GeneratePrivateKey()
	priv, _ := wgtypes.GeneratePrivateKey()
	tests := []struct {
		name  string
		setup func(t *testing.T, key string)
		want  string
	}{
		{"fifo", func(t *testing.T, key string) {
			if err := unix.Mkfifo(key, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file (a FIFO)"},
		{"symlink", func(t *testing.T, key string) {
			writeKey(t, filepath.Dir(key), "real.key", priv, 0o600)
			if err := os.Symlink(filepath.Join(filepath.Dir(key), "real.key"), key); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"other owner", func(t *testing.T, key string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give the key to another user")
			}
			writeKey(t, filepath.Dir(key), "site.key", priv, 0o600)
			if err := os.Chown(key, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, filepath.Join(dir, "site.key"))
			file := filepath.Join(dir, "site.yaml")
			if err := os.WriteFile(file, []byte(wgSiteYAML(peer.PublicKey().String(), "")), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file, cfgHost)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- LoadKeys(cfg, file) }()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("LoadKeys blocked")
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Errors[0].Line != 7 || ce.Errors[0].Field != "tunnel.private_key_file" ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a file:line:field error saying %q, got %v", tc.want, err)
			}
		})
	}
}

// TestWireGuardListenAddress: wireguard mode binds to the address
// `listen` names, as plain mode does.
func TestWireGuardListenAddress(t *testing.T) {
	peer, _ := wgtypes.GeneratePrivateKey()
	yaml := strings.Replace(wgSiteYAML(peer.PublicKey().String(), ""), "0.0.0.0:51820", "198.18.0.2:51820", 1)
	cfg, err := Parse("site.yaml", []byte(yaml), cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Tunnel.Listen.String(); got != "198.18.0.2:51820" {
		t.Errorf("listen %s, want 198.18.0.2:51820", got)
	}
}

func TestWireGuardConfigErrors(t *testing.T) {
	peer, _ := wgtypes.GeneratePrivateKey()
	pub := peer.PublicKey().String()
	tests := []struct{ name, yaml, field, msg string }{
		{"bad key", wgSiteYAML("not-a-key", ""), "tunnel.peers[0].public_key", "invalid key"},
		{"missing key", strings.Replace(wgSiteYAML(pub, ""), "      public_key: "+pub+"\n", "", 1), "tunnel.peers[0].public_key", "required in wireguard mode"},
		{"no private key", strings.Replace(wgSiteYAML(pub, ""), "  private_key_file: site.key\n", "", 1), "tunnel.private_key_file", "required in wireguard mode"},
		{"bad mode", strings.Replace(wgSiteYAML(pub, ""), "mode: wireguard", "mode: ipsec", 1), "tunnel.mode", "want plain or wireguard"},
		{"key in plain mode", strings.Replace(wgSiteYAML(pub, ""), "mode: wireguard", "mode: plain", 1), "tunnel.private_key_file", "only used in wireguard mode"},
		{"same key twice", wgSiteYAML(pub, "    - name: q\n      public_key: "+pub+"\n      prefixes: [10.2.0.0/24]\n"), "tunnel.peers[1].public_key", "also tunnel.peers[0].public_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantFieldError(t, tc.yaml, tc.field, tc.msg) })
	}
}

// wantFieldError parses yaml and wants an error of field whose message
// contains msg, with a line number.
func wantFieldError(t *testing.T, yaml, field, msg string) {
	t.Helper()
	_, err := Parse("site.yaml", []byte(yaml), cfgHost)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a *Error, got %v", err)
	}
	for _, fe := range ce.Errors {
		if fe.Field == field && strings.Contains(fe.Msg, msg) && fe.Line > 0 {
			return
		}
	}
	t.Errorf("want %s: ...%s... with a line, got:\n%v", field, msg, err)
}
