package agent

import "github.com/prometheus/client_golang/prometheus"

// The eBPF dataplane's own metrics. Its per-peer packets and bytes and its
// drops are summed into the engine's families (tunnel_ebpf.go, Stats);
// what the programs pass to the userspace engine is a family of its own:
// those packets are then counted again by what the engine does with them,
// so adding them to the others would count them twice.
var (
	descToUserspace = prometheus.NewDesc(metricPrefix+"ebpf_to_userspace_packets_total",
		"Packets the eBPF programs passed to the userspace engine, by reason.", []string{"reason"}, nil)
	descReaderDrops = prometheus.NewDesc(metricPrefix+"ebpf_exception_reader_dropped_total",
		"Packets the reader of the eBPF exceptions dropped before the engine saw them, by reason.", []string{"reason"}, nil)
	descHookRepairs = prometheus.NewDesc(metricPrefix+"ebpf_hook_repairs_total",
		"eBPF program hooks put back after their interface was re-created or the hook removed.", nil, nil)
)

// ebpfDescs are the eBPF section's metric descriptions.
func ebpfDescs() []*prometheus.Desc {
	return []*prometheus.Desc{descToUserspace, descReaderDrops, descHookRepairs}
}

// collectEBPF exports the eBPF section of the status; nothing without
// one (userspace dataplane).
func collectEBPF(ch chan<- prometheus.Metric, st *EBPFStatus) {
	if st == nil {
		return
	}
	for reason, n := range st.ToUserspace {
		ch <- prometheus.MustNewConstMetric(descToUserspace, prometheus.CounterValue, float64(n), reason)
	}
	for reason, n := range st.ExceptionReader {
		ch <- prometheus.MustNewConstMetric(descReaderDrops, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descHookRepairs, prometheus.CounterValue, float64(st.Repairs))
}
