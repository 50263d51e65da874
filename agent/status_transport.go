package agent

import (
	"fmt"
	"io"

	"tunnel-agent/dataplane/udp"
)

// TransportStatus is the tunnel socket's own counters: datagrams dropped
// for their size, datagrams the kernel dropped before the agent read them
// (receive buffer full: a flood, or the agent fell behind), and what
// UDP_GRO coalesced (whether the kernel hands the agent super-datagrams
// rather than one datagram at a time).
type TransportStatus struct {
	Truncated   uint64 `json:"truncated"`
	KernelDrops uint64 `json:"kernel_drops"`
	GRO         bool   `json:"gro"`
	GROMessages uint64 `json:"gro_messages"` // messages that carried several datagrams
	GROSegments uint64 `json:"gro_segments"` // datagrams those carried
}

// withTransport returns st with the counters of transport t (if any).
func (st Status) withTransport(t *udp.Transport) Status {
	if t == nil {
		return st
	}
	g := t.GROStats()
	st.Transport = &TransportStatus{Truncated: t.Truncated(), KernelDrops: t.KernelDrops(), GRO: g.Enabled,
		GROMessages: g.Messages, GROSegments: g.Segments}
	return st
}

// printTransport writes the transport line of `tunnel-agent status`.
func printTransport(w io.Writer, ts *TransportStatus) {
	if ts == nil {
		return
	}
	gro := "off"
	if ts.GRO {
		gro = fmt.Sprintf("%d messages carried %d datagrams", ts.GROMessages, ts.GROSegments)
	}
	fmt.Fprintf(w, "transport truncated=%d kernel-dropped=%d, udp gro: %s\n", ts.Truncated, ts.KernelDrops, gro)
}
