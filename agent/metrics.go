package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tunnel-agent/dataplane"
	"tunnel-agent/netcfg"
)

// metrics are the Prometheus metrics of a running agent. The dataplane's
// counters are read from Engine.Stats at scrape time (a Collector), so
// the packet path is not touched; repairs and reloads are counted here.
type metrics struct {
	reg     *prometheus.Registry
	repairs *prometheus.CounterVec
	reloads *prometheus.CounterVec
	// rebindFailures counts failed attempts to re-open the capture on a
	// re-created LAN interface (watch.go).
	rebindFailures prometheus.Counter
}

const metricPrefix = "tunnel_agent_"

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "host_repairs_total",
			Help: "Host drifts acted on while running, per item of the host configuration and action (repaired, repair failed, gave up)."},
			[]string{"item", "action"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "reloads_total",
			Help: "Configuration reloads (SIGHUP or `tunnel-agent reload`), by result (ok, failed)."}, []string{"result"}),
		rebindFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + "capture_rebind_failures_total",
			Help: "Failed attempts to re-open the capture on a re-created LAN interface (retried with backoff; nothing is captured meanwhile)."}),
	}
	m.reg.MustRegister(m.repairs, m.reloads, m.rebindFailures, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) repair(ev netcfg.WatchEvent) {
	m.repairs.WithLabelValues(ev.Item, string(ev.Action)).Inc()
}

var (
	descPeerPackets = prometheus.NewDesc(metricPrefix+"peer_packets_total",
		"Tunneled packets per peer and direction (rx: accepted from the peer, tx: sent to it); keepalives excluded.",
		[]string{"peer", "direction"}, nil)
	descPeerBytes = prometheus.NewDesc(metricPrefix+"peer_bytes_total",
		"Bytes of tunneled packets (inner IP packets) per peer and direction.", []string{"peer", "direction"}, nil)
	descPeerKeepalives = prometheus.NewDesc(metricPrefix+"peer_keepalives_total",
		"Keepalives per peer and direction (rx: the peer's requests, replies and old-format keepalives; tx: our requests).",
		[]string{"peer", "direction"}, nil)
	descPeerKeepalivesAnswered = prometheus.NewDesc(metricPrefix+"peer_keepalives_answered_total",
		"Replies sent to the peer's keepalive requests.", []string{"peer"}, nil)
	descKeepaliveRepliesLimited = prometheus.NewDesc(metricPrefix+"keepalive_replies_rate_limited_total",
		"Keepalive requests left unanswered by the per-peer reply limit.", nil, nil)
	descPeerLast = prometheus.NewDesc(metricPrefix+"peer_last_received_timestamp_seconds",
		"Unix time of the last packet or keepalive received from the peer (absent until the first).", []string{"peer"}, nil)
	descDrops = prometheus.NewDesc(metricPrefix+"dropped_packets_total",
		"Packets dropped by the dataplane, per reason.", []string{"reason"}, nil)
	descICMP = prometheus.NewDesc(metricPrefix+"icmp_errors_total",
		"ICMP errors generated (sent), held back by the rate limit (rate_limited), or never generated because the packet's source is not one host (bad_source: broadcast, multicast, a local subnet's broadcast, ...).",
		[]string{"result"}, nil)
	descFragmented = prometheus.NewDesc(metricPrefix+"fragmented_packets_total",
		"IPv4 packets from the tunnel larger than the LAN MTU, DF clear, fragmented before injection.", nil, nil)
	descFragments = prometheus.NewDesc(metricPrefix+"fragments_injected_total",
		"Fragments injected for those packets.", nil, nil)
	descTransportDrops = prometheus.NewDesc(metricPrefix+"transport_kernel_drops_total",
		"Datagrams for the tunnel socket that the kernel dropped before the agent read them (receive buffer full, bad checksum); plain mode.", nil, nil)
	descTruncated = prometheus.NewDesc(metricPrefix+"capture_truncated_total",
		"Captured frames dropped because they did not fit the read buffer.", nil, nil)
	descGSODropped = prometheus.NewDesc(metricPrefix+"capture_gso_dropped_total",
		"Captured packets dropped because the segments of a TCP super-packet before them filled the read batch.", nil, nil)
	descKernelDrops = prometheus.NewDesc(metricPrefix+"capture_kernel_drops_total",
		"Frames the kernel dropped before the capture read them (receive buffer or ring full).", nil, nil)
	descUnreadable = prometheus.NewDesc(metricPrefix+"capture_unreadable_total",
		"Captured frames dropped because the capture could not take them apart (a super-packet the kernel cannot describe, an unexpected link-layer header).", nil, nil)
)

// engineCollector exports the dataplane's Stats.
type engineCollector struct{ l *liveSite }

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerPackets, descPeerBytes, descPeerKeepalives, descPeerKeepalivesAnswered,
		descPeerLast, descDrops, descICMP, descKeepaliveRepliesLimited, descFragmented, descFragments, descTruncated,
		descGSODropped, descKernelDrops, descUnreadable, descTransportDrops} {
		ch <- d
	}
	for _, d := range wgDescs() {
		ch <- d
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	c.l.mu.Lock()
	t := c.l.tun
	c.l.mu.Unlock()
	st := t.status()
	for _, p := range st.Dataplane.Peers {
		collectPeer(ch, p)
	}
	for reason, n := range st.Dataplane.Drops {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descICMP, prometheus.CounterValue, float64(st.Dataplane.ICMPSent), "sent")
	ch <- prometheus.MustNewConstMetric(descICMP, prometheus.CounterValue, float64(st.Dataplane.ICMPRateLimited), "rate_limited")
	ch <- prometheus.MustNewConstMetric(descICMP, prometheus.CounterValue, float64(st.Dataplane.ICMPBadSource), "bad_source")
	ch <- prometheus.MustNewConstMetric(descFragmented, prometheus.CounterValue, float64(st.Dataplane.Fragmented))
	ch <- prometheus.MustNewConstMetric(descFragments, prometheus.CounterValue, float64(st.Dataplane.Fragments))
	ch <- prometheus.MustNewConstMetric(descKeepaliveRepliesLimited, prometheus.CounterValue, float64(st.Dataplane.KeepaliveRepliesRateLimited))
	collectCapture(ch, st)
	collectTransport(ch, st.Transport)
	collectWireGuard(ch, st.WireGuard)
}

// collectTransport exports the tunnel socket's counters, when the
// tunnel has one of its own (plain mode).
func collectTransport(ch chan<- prometheus.Metric, t *TransportStatus) {
	if t != nil {
		ch <- prometheus.MustNewConstMetric(descTransportDrops, prometheus.CounterValue, float64(t.KernelDrops))
	}
}

func collectCapture(ch chan<- prometheus.Metric, st Status) {
	ch <- prometheus.MustNewConstMetric(descTruncated, prometheus.CounterValue, float64(st.CaptureTruncated))
	ch <- prometheus.MustNewConstMetric(descGSODropped, prometheus.CounterValue, float64(st.CaptureGSODropped))
	ch <- prometheus.MustNewConstMetric(descKernelDrops, prometheus.CounterValue, float64(st.CaptureKernelDrops))
	ch <- prometheus.MustNewConstMetric(descUnreadable, prometheus.CounterValue, float64(st.CaptureUnreadable))
}

func collectPeer(ch chan<- prometheus.Metric, p dataplane.PeerStats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descPeerPackets, p.RxPackets, p.Name, "rx")
	counter(descPeerPackets, p.TxPackets, p.Name, "tx")
	counter(descPeerBytes, p.RxBytes, p.Name, "rx")
	counter(descPeerBytes, p.TxBytes, p.Name, "tx")
	counter(descPeerKeepalives, p.KeepalivesReceived, p.Name, "rx")
	counter(descPeerKeepalives, p.KeepalivesSent, p.Name, "tx")
	counter(descPeerKeepalivesAnswered, p.KeepalivesAnswered, p.Name)
	if !p.LastReceived.IsZero() {
		ch <- prometheus.MustNewConstMetric(descPeerLast, prometheus.GaugeValue,
			float64(p.LastReceived.UnixNano())/1e9, p.Name)
	}
}

// Bounds of the metrics endpoint: any local user can connect to it.
const (
	metricsMaxConns          = 32
	metricsReadHeaderTimeout = 5 * time.Second
	metricsReadTimeout       = 10 * time.Second
	metricsWriteTimeout      = 30 * time.Second
	metricsIdleTimeout       = 60 * time.Second
	metricsMaxHeaderBytes    = 8 << 10
)

// serveMetrics serves /metrics on metrics.listen, if set, and returns the
// function that stops it. A port that cannot be opened is logged; the
// tunnel runs on without metrics.
func (l *liveSite) serveMetrics() (stop func()) {
	l.mu.Lock() // a reload may already run (it cannot change metrics.listen)
	addr := l.cfg.Metrics.Listen
	l.mu.Unlock()
	if !addr.IsValid() {
		return func() {}
	}
	l.met.reg.MustRegister(engineCollector{l})
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		l.o.log.Error("metrics endpoint unavailable", "listen", addr, "err", err)
		return func() {}
	}
	srv, lim := newMetricsServer(ln, l.met.reg, l.o.log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lim); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.o.log.Error("metrics endpoint failed", "err", err)
		}
	}()
	l.o.log.Info("metrics endpoint listening", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		_ = srv.Close()
		<-done
	}
}

// newMetricsServer is the HTTP server of the metrics endpoint on ln: only
// GET /metrics (404 elsewhere), with timeouts, a header size limit and at
// most metricsMaxConns connections (connlimit.go). Serve it on the
// returned listener.
func newMetricsServer(ln net.Listener, reg *prometheus.Registry, log *slog.Logger) (*http.Server, *connLimiter) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), Timeout: metricsWriteTimeout / 2}))
	lim := newConnLimiter(ln, metricsMaxConns)
	srv := &http.Server{Handler: mux, ConnState: lim.ConnState,
		ReadHeaderTimeout: metricsReadHeaderTimeout, ReadTimeout: metricsReadTimeout,
		WriteTimeout: metricsWriteTimeout, IdleTimeout: metricsIdleTimeout, MaxHeaderBytes: metricsMaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return srv, lim
}
