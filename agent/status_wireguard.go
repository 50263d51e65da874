package agent

import (
	"fmt"
	"io"
	"time"

	"tunnel-agent/dataplane/wireguard"
)

// printWireGuard prints the WireGuard side as `wg show` does, plus its
// counters (wgcounters.go); nothing when there is none.
func printWireGuard(w io.Writer, st *wireguard.Stats, now time.Time) {
	if st == nil {
		return
	}
	fmt.Fprintf(w, "wireguard: public key %s, listening port %d\n", st.PublicKey, st.ListenPort)
	for _, p := range st.Peers {
		fmt.Fprintf(w, "  peer %s (%s)\n", p.PublicKey, p.Name)
		if p.Endpoint.IsValid() {
			fmt.Fprintf(w, "    endpoint: %s\n", p.Endpoint)
		}
		fmt.Fprintf(w, "    latest handshake: %s\n", handshakeAgo(p.LastHandshake, now))
		fmt.Fprintf(w, "    transfer: %s received, %s sent\n", byteCount(p.RxBytes), byteCount(p.TxBytes))
		if p.Keepalive > 0 {
			fmt.Fprintf(w, "    persistent keepalive: every %s\n", p.Keepalive)
		}
	}
	fmt.Fprintf(w, "wireguard:")
	for _, c := range wgCounters(st) {
		fmt.Fprintf(w, " %s=%d", c.label(), c.value)
	}
	fmt.Fprintln(w)
}

func handshakeAgo(t, now time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// byteCount formats n as wg does: B, KiB, MiB, GiB, TiB.
func byteCount(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.2f %s", v, units[i])
}
