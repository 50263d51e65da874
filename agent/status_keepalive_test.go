package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tunnel-agent/dataplane"
)

// TestPeerKeepaliveCounters: status and metrics show the three keepalive
// counters of a peer.
func TestPeerKeepaliveCounters(t *testing.T) {
	now := time.Now()
	p := dataplane.PeerStats{Name: "client", KeepalivesSent: 3, KeepalivesReceived: 7, KeepalivesAnswered: 4,
		LastReceived: now.Add(-2 * time.Second)}
	var b strings.Builder
	printPeer(&b, p, now)
	if !strings.Contains(b.String(), "keepalives sent 3 received 7 answered 4") {
		t.Errorf("status line:\n%s", b.String())
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(peerCollector{p})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := `"` + mf.GetName() + `"`
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	for _, c := range []struct {
		metric, labels string
		want           float64
	}{
		{"tunnel_agent_peer_keepalives_total", "peer=client,direction=rx", 7},
		{"tunnel_agent_peer_keepalives_total", "peer=client,direction=tx", 3},
		{"tunnel_agent_peer_keepalives_answered_total", "peer=client", 4},
	} {
		found := false
		for name, v := range got {
			if strings.Contains(name, `"`+c.metric+`"`) && labelsMatch(name, c.labels) {
				found = true
				if v != c.want {
					t.Errorf("%s{%s} = %v, want %v", c.metric, c.labels, v, c.want)
				}
			}
		}
		if !found {
			t.Errorf("%s{%s} missing in %v", c.metric, c.labels, got)
		}
	}
}

// labelsMatch reports whether every k=v of want is among name's labels.
func labelsMatch(name, want string) bool {
	for _, kv := range strings.Split(want, ",") {
		if !strings.Contains(name+",", ","+kv+",") {
			return false
		}
	}
	return true
}

// peerCollector exports one peer's metrics as the engine collector does.
type peerCollector struct{ p dataplane.PeerStats }

func (peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerPackets, descPeerBytes, descPeerKeepalives, descPeerKeepalivesAnswered, descPeerLast} {
		ch <- d
	}
}

func (c peerCollector) Collect(ch chan<- prometheus.Metric) { collectPeer(ch, c.p) }
