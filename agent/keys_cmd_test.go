package agent

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestKeyCommandsMatchWireGuardFormat(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"genkey"}, &out, &errb); code != 0 {
		t.Fatalf("genkey: exit %d: %s", code, errb.String())
	}
	priv, err := wgtypes.ParseKey(strings.TrimSuffix(out.String(), "\n"))
	if err != nil || len(out.String()) != 45 {
		t.Fatalf("genkey printed %q: %v", out.String(), err)
	}
	stdin = strings.NewReader(out.String())
	t.Cleanup(func() { stdin = os.Stdin })
	out.Reset()
	if code := Main([]string{"pubkey"}, &out, &errb); code != 0 || out.String() != priv.PublicKey().String()+"\n" {
		t.Fatalf("pubkey: exit %d, %q, want %q (%s)", code, out.String(), priv.PublicKey().String(), errb.String())
	}
	stdin = strings.NewReader("garbage\n")
	if code := Main([]string{"pubkey"}, &out, &errb); code != ExitUsage {
		t.Errorf("pubkey of garbage: exit %d, want %d", code, ExitUsage)
	}
	out.Reset()
	if code := Main([]string{"genpsk"}, &out, &errb); code != 0 || len(out.String()) != 45 {
		t.Errorf("genpsk: exit %d, %q", code, out.String())
	}
}
