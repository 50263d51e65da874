package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tunnel-agent/dataplane/wireguard"
)

// wgCollector exports one wireguard.Stats, for the test.
type wgCollector struct{ st *wireguard.Stats }

func (c wgCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range wgDescs() {
		ch <- d
	}
}
func (c wgCollector) Collect(ch chan<- prometheus.Metric) { collectWireGuard(ch, c.st) }

func TestWireGuardCountersFromTheType(t *testing.T) {
	st := &wireguard.Stats{NotWireGuard: 3, HandshakeRejected: 2, TransportRejected: 1, InFlightInbound: 7,
		Peers: []wireguard.PeerStats{{Name: "b", RxBytes: 100, TxBytes: 200, LastHandshake: time.Unix(1700000000, 0)}, {Name: "c"}}}
	var labels []string
	for _, c := range wgCounters(st) {
		labels = append(labels, c.label())
	}
	for _, want := range []string{"not_wireguard", "handshake_rejected", "transport_rejected"} {
		if !strings.Contains(" "+strings.Join(labels, " ")+" ", " "+want+" ") {
			t.Errorf("counter %s not listed: %v", want, labels)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(wgCollector{st})
	want := `
# HELP tunnel_agent_wireguard_not_wireguard_total WireGuard side: not wireguard (the status's wireguard.not_wireguard).
# TYPE tunnel_agent_wireguard_not_wireguard_total counter
tunnel_agent_wireguard_not_wireguard_total 3
# HELP tunnel_agent_wireguard_in_flight_inbound WireGuard side: in flight inbound now (the status's wireguard.in_flight_inbound).
# TYPE tunnel_agent_wireguard_in_flight_inbound gauge
tunnel_agent_wireguard_in_flight_inbound 7
# HELP tunnel_agent_wireguard_peer_last_handshake_timestamp_seconds Unix time of the peer's last completed WireGuard handshake (absent until the first). Older than 3 minutes while traffic is sent to the peer: the peer is unreachable (docs/metrics.md).
# TYPE tunnel_agent_wireguard_peer_last_handshake_timestamp_seconds gauge
tunnel_agent_wireguard_peer_last_handshake_timestamp_seconds{peer="b"} 1.7e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tunnel_agent_wireguard_not_wireguard_total", "tunnel_agent_wireguard_in_flight_inbound",
		"tunnel_agent_wireguard_peer_last_handshake_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(wgCollector{st}, "tunnel_agent_wireguard_peer_bytes_total"); n != 4 {
		t.Errorf("%d peer byte series, want 4", n)
	}
}
