package agent

import (
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"tunnel-agent/dataplane/wireguard"
)

// The WireGuard side's device-wide counters are the uint64 fields of
// wireguard.Stats (one number each) and its map[string]uint64 fields (a
// family: by outcome, by reason), named by their JSON names; its int
// fields are levels (gauges, such as the packets in flight). Status and
// metrics list them from the type, so that a counter the wireguard
// package adds shows without a change here.

// wgCounterField is one counter field of wireguard.Stats.
type wgCounterField struct {
	index  int    // in the struct
	name   string // its JSON name
	family bool   // a map[string]uint64: one value per key
	gauge  bool   // an int: a level, not a count
	desc   *prometheus.Desc
}

// wgCounterFields are wireguard.Stats's counter fields, in field order.
var wgCounterFields = func() []wgCounterField {
	var out []wgCounterField
	typ := reflect.TypeFor[wireguard.Stats]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		c := wgCounterField{index: i, name: name}
		switch {
		case f.Type.Kind() == reflect.Uint64:
			c.desc = prometheus.NewDesc(metricPrefix+"wireguard_"+name+"_total",
				"WireGuard side: "+strings.ReplaceAll(name, "_", " ")+" (the status's wireguard."+name+").", nil, nil)
		case f.Type.Kind() == reflect.Int:
			c.gauge = true
			c.desc = prometheus.NewDesc(metricPrefix+"wireguard_"+name,
				"WireGuard side: "+strings.ReplaceAll(name, "_", " ")+" now (the status's wireguard."+name+").", nil, nil)
		case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String && f.Type.Elem().Kind() == reflect.Uint64:
			c.family = true
			c.desc = prometheus.NewDesc(metricPrefix+"wireguard_"+name+"_total",
				"WireGuard side: "+strings.ReplaceAll(name, "_", " ")+", by kind (the status's wireguard."+name+").", []string{"kind"}, nil)
		default:
			continue
		}
		out = append(out, c)
	}
	return out
}()

// wgCounter is one value of a counter field: kind is the map key of a
// family ("" for a single number).
type wgCounter struct {
	field *wgCounterField
	kind  string
	value uint64
}

// wgCounters lists st's counters, families sorted by kind.
func wgCounters(st *wireguard.Stats) []wgCounter {
	v := reflect.ValueOf(st).Elem()
	var out []wgCounter
	for i := range wgCounterFields {
		f := &wgCounterFields[i]
		fv := v.Field(f.index)
		switch {
		case f.gauge:
			out = append(out, wgCounter{field: f, value: uint64(max(fv.Int(), 0))})
			continue
		case !f.family:
			out = append(out, wgCounter{field: f, value: fv.Uint()})
			continue
		}
		keys := make([]string, 0, fv.Len())
		for _, k := range fv.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, wgCounter{field: f, kind: k, value: fv.MapIndex(reflect.ValueOf(k).Convert(fv.Type().Key())).Uint()})
		}
	}
	return out
}

// label is the counter's name in `tunnel-agent status`.
func (c wgCounter) label() string {
	if c.kind == "" {
		return c.field.name
	}
	return c.field.name + "." + c.kind
}

var (
	descWGPeerBytes = prometheus.NewDesc(metricPrefix+"wireguard_peer_bytes_total",
		"WireGuard messages' bytes per peer and direction, as `wg show` counts them (payload with WireGuard's 32 bytes of overhead, handshakes and keepalives included).",
		[]string{"peer", "direction"}, nil)
	descWGLastHandshake = prometheus.NewDesc(metricPrefix+"wireguard_peer_last_handshake_timestamp_seconds",
		"Unix time of the peer's last completed WireGuard handshake (absent until the first). Older than 3 minutes while traffic is sent to the peer: the peer is unreachable (docs/metrics.md).",
		[]string{"peer"}, nil)
)

// wgDescs are the WireGuard side's metric descriptions.
func wgDescs() []*prometheus.Desc {
	out := []*prometheus.Desc{descWGPeerBytes, descWGLastHandshake}
	for _, f := range wgCounterFields {
		out = append(out, f.desc)
	}
	return out
}

// collectWireGuard exports st, the status's WireGuard section (none
// outside wireguard mode).
func collectWireGuard(ch chan<- prometheus.Metric, st *wireguard.Stats) {
	if st == nil {
		return
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(descWGPeerBytes, prometheus.CounterValue, float64(p.RxBytes), p.Name, "rx")
		ch <- prometheus.MustNewConstMetric(descWGPeerBytes, prometheus.CounterValue, float64(p.TxBytes), p.Name, "tx")
		if !p.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(descWGLastHandshake, prometheus.GaugeValue, float64(p.LastHandshake.UnixNano())/1e9, p.Name)
		}
	}
	for _, c := range wgCounters(st) {
		switch {
		case c.field.gauge:
			ch <- prometheus.MustNewConstMetric(c.field.desc, prometheus.GaugeValue, float64(c.value))
		case c.kind == "":
			ch <- prometheus.MustNewConstMetric(c.field.desc, prometheus.CounterValue, float64(c.value))
		default:
			ch <- prometheus.MustNewConstMetric(c.field.desc, prometheus.CounterValue, float64(c.value), c.kind)
		}
	}
}
