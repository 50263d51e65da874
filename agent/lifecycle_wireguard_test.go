package agent

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/netcfg"
)

// wgSiteYAML turns a site file of this file's into wireguard mode:
// tunnel.mode, the private key file, and the first peer's public key.
func wgSiteYAML(plain, keyFile string, peer wgtypes.Key) string {
	out := strings.Replace(plain, "\ntunnel:\n", "\ntunnel:\n  mode: wireguard\n  private_key_file: "+keyFile+"\n", 1)
	i := strings.Index(out, "    - name: ")
	j := i + strings.IndexByte(out[i:], '\n') + 1
	return out[:j] + "      public_key: " + peer.PublicKey().String() + "\n" + out[j:]
}

// wgKeyFile writes a new private key as `tunnel-agent genkey` does.
func wgKeyFile(t *testing.T, name string) (string, wgtypes.Key) {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, k
}

// firstHandshake sends echo requests from src to dst on c until one comes
// out of inj, for up to 30 s: the first one waits for WireGuard's first
// handshake, which the protocol retries only after 5 s should it be
// lost or late (it was once, in a full `go test ./...` on a loaded
// machine).
func firstHandshake(t *testing.T, c *fakeCapture, inj *dptest.Injector, src, dst string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		pkt := dptest.EchoRequest(netip.MustParseAddr(src), netip.MustParseAddr(dst), 7, seq, 32)
		if !c.Send(pkt) {
			t.Fatalf("%s -> %s: the capture is closed", src, dst)
		}
		if got, err := inj.Recv(2 * time.Second); err == nil && slices.Equal(got[12:20], pkt[12:20]) {
			for { // the earlier requests, once the handshake is done
				if _, err := inj.Recv(200 * time.Millisecond); err != nil {
					return
				}
			}
		}
	}
	t.Fatalf("%s -> %s: nothing injected within 30 s", src, dst)
}

// TestLifecycleWireGuard: both sites in wireguard mode, over the fake
// system's in-memory network: `up`, packets both ways with the handshake in the
// status, a reload that adds a peer and changes prefixes while the
// session of the unchanged peer goes on, the client's capture re-bound on
// a re-created LAN interface, and SIGTERM reverting both hosts.
func TestLifecycleWireGuard(t *testing.T) {
	net := dptest.NewNetwork()
	ckFile, ck := wgKeyFile(t, "client.key")
	skFile, sk := wgKeyFile(t, "server.key")
	clientYAMLWG := wgSiteYAML(clientYAML, ckFile, sk)
	serverYAMLWG := wgSiteYAML(serverYAML, skFile, ck)
	client := newTestSite(t, clientHost(t), net, wanA, clientYAMLWG)
	server := newTestSite(t, hostWithWAN(t, wanB), net, wanB, serverYAMLWG)
	client.up()
	server.up()

	firstHandshake(t, client.sys.capture(t, 0), server.sys.injector(t), "192.168.111.10", "11.11.11.100")
	send(t, server.sys.capture(t, 0), client.sys.injector(t), "11.11.11.100", "192.168.111.10")
	st := server.status()
	if st.WireGuard == nil || len(st.WireGuard.Peers) != 1 || st.WireGuard.Peers[0].LastHandshake.IsZero() ||
		st.Dataplane.Peers[0].RxPackets == 0 || st.Dataplane.Peers[0].TxPackets != 1 {
		t.Fatalf("server status: %+v, WireGuard %+v", st.Dataplane.Peers, st.WireGuard)
	}
	handshake := st.WireGuard.Peers[0].LastHandshake

	_, branch := wgKeyFile(t, "branch.key")
	server.write(strings.Replace(serverYAMLWG, "      prefixes: [192.168.111.0/24]\n",
		"      prefixes: [192.168.111.0/24, 192.168.112.0/24]\n"+
			"    - name: branch\n      public_key: "+branch.PublicKey().String()+"\n      endpoint: 198.18.0.3:60000\n      prefixes: [10.9.0.0/24]\n", 1))
	if out, err := server.run("reload"); err != nil || !strings.Contains(out, "added: branch") {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if r, err := server.sys.host.Route("", netip.MustParsePrefix("10.9.0.0/24")); err != nil || r.Type != netcfg.RouteBlackhole {
		t.Errorf("blackhole of the new peer: %+v, %v", r, err)
	}
	if got := fmt.Sprint(server.sys.capture(t, 0).takes()); got != "[192.168.111.0/24 192.168.112.0/24 10.9.0.0/24]" {
		t.Errorf("the capture takes %s", got)
	}
	send(t, server.sys.capture(t, 0), client.sys.injector(t), "11.11.11.100", "192.168.111.10")
	st = server.status()
	if len(st.WireGuard.Peers) != 2 || st.WireGuard.Peers[1].Name != "branch" || st.WireGuard.Peers[0].LastHandshake != handshake {
		t.Errorf("after the reload: %+v (the client's handshake was %v)", st.WireGuard.Peers, handshake)
	}
	if st.Dataplane.Peers[0].TxPackets != 2 {
		t.Errorf("the client's counters were not kept across the reload: %+v", st.Dataplane.Peers[0])
	}

	host := client.sys.host
	host.Must(t, host.DeleteLink("", "lan0"))
	host.AddLink(t, "", "lan0", "device", 1500, true)
	host.Must(t, host.AddAddr("", "lan0", netip.MustParsePrefix("192.168.111.1/24")))
	second := client.sys.capture(t, 1)
	client.sys.waitFor(t, "the re-bind", func() bool { return client.sys.capture(t, 0).closed.Load() })
	send(t, second, server.sys.injector(t), "192.168.111.10", "11.11.11.100")

	for _, s := range []*testSite{client, server} {
		if err := s.stop(); err != nil {
			t.Errorf("up: %v", err)
		}
		s.checkRestored("after SIGTERM")
	}
}
