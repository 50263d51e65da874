package agent

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnel-agent/dataplane/wireguard"
)

func TestPrintWireGuardLikeWgShow(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &wireguard.Stats{PublicKey: "PUB=", ListenPort: 51820, TransportRejected: 3, Peers: []wireguard.PeerStats{{
		Name: "client", PublicKey: "PEER=", Endpoint: netip.MustParseAddrPort("198.18.0.1:61000"),
		LastHandshake: now.Add(-7 * time.Second), RxBytes: 1536, TxBytes: 3 << 20, Keepalive: 25 * time.Second,
	}}}
	var b bytes.Buffer
	printWireGuard(&b, st, now)
	for _, want := range []string{"public key PUB=, listening port 51820", "peer PEER= (client)", "endpoint: 198.18.0.1:61000",
		"latest handshake: 7s ago", "transfer: 1.50 KiB received, 3.00 MiB sent", "every 25s", "transport_rejected=3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
