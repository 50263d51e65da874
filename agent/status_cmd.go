package agent

import (
	"fmt"
	"io"
	"sort"
	"time"

	"tunnel-agent/dataplane"
)

// runStatus prints the running agent's peers and counters.
func runStatus(o *options) error {
	cfg, err := loadConfig(o, nil)
	if err != nil {
		return err
	}
	st, err := readStatus(o.stateDir, cfg.Site)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, st)
	}
	printStatus(o.stdout, st, time.Now())
	return nil
}

func printStatus(w io.Writer, st Status, now time.Time) {
	fmt.Fprintf(w, "site %s: pid %d, up %s, listening on %s\n", st.Site, st.PID,
		now.Sub(st.Started).Round(time.Second), st.Listen)
	for _, p := range st.Dataplane.Peers {
		printPeer(w, p, now)
	}
	printWireGuard(w, st.WireGuard, now)
	fmt.Fprintf(w, "drops:")
	names := make([]string, 0, len(st.Dataplane.Drops))
	for n := range st.Dataplane.Drops {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, " %s=%d", n, st.Dataplane.Drops[n])
	}
	fmt.Fprintf(w, "\nicmp errors sent=%d rate-limited=%d bad-source=%d, fragmented=%d (into %d fragments)\n",
		st.Dataplane.ICMPSent, st.Dataplane.ICMPRateLimited, st.Dataplane.ICMPBadSource, st.Dataplane.Fragmented, st.Dataplane.Fragments)
	fmt.Fprintf(w, "capture truncated=%d gso-dropped=%d kernel-dropped=%d unreadable=%d\n",
		st.CaptureTruncated, st.CaptureGSODropped, st.CaptureKernelDrops, st.CaptureUnreadable)
	if st.CaptureRebindFailures > 0 || st.CaptureRebindFailing {
		state := "bound"
		if st.CaptureRebindFailing {
			state = "NOT BOUND, retrying: nothing is captured (see the agent's log)"
		}
		fmt.Fprintf(w, "capture re-bind to the re-created LAN interface: %s; failed attempts %d\n", state, st.CaptureRebindFailures)
	}
	if n := st.Dataplane.KeepaliveRepliesRateLimited; n > 0 {
		fmt.Fprintf(w, "keepalive requests left unanswered (reply limit): %d\n", n)
	}
	printTransport(w, st.Transport)
}

func printPeer(w io.Writer, p dataplane.PeerStats, now time.Time) {
	ep := "not learned yet"
	if p.CurrentEndpoint.IsValid() {
		ep = p.CurrentEndpoint.String()
		if !p.ConfiguredEndpoint.IsValid() {
			ep += " (learned)"
		}
	}
	last := "never"
	if !p.LastReceived.IsZero() {
		last = now.Sub(p.LastReceived).Round(time.Millisecond).String() + " ago"
	}
	fmt.Fprintf(w, "peer %s: endpoint %s, last packet %s\n", p.Name, ep, last)
	fmt.Fprintf(w, "  rx %d packets %d bytes, tx %d packets %d bytes, keepalives sent %d received %d answered %d\n",
		p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes, p.KeepalivesSent, p.KeepalivesReceived, p.KeepalivesAnswered)
}
