package ebpf

import (
	"fmt"
	"net/netip"
	"slices"

	cebpf "github.com/cilium/ebpf"
)

// Stats is a snapshot of the programs' counters, summed over CPUs.
type Stats struct {
	Peers []PeerStats `json:"peers"`
	// Drops counts packets the programs dropped, by reason, every reason
	// present (zeros included). The names are the userspace engine's where
	// they mean the same; exception_lost counts packets meant for the
	// userspace path that the perf buffer could not take.
	Drops map[string]uint64 `json:"drops"`
	// ToUserspace counts tunnel packets handed to the userspace path, by
	// why, every reason present. LAN-side ones come back through
	// Exceptions; WAN-side ones (keepalive, unknown_sender, ...) reach the
	// agent's UDP socket. The userspace engine counts what it then does.
	ToUserspace map[string]uint64 `json:"to_userspace"`
}

// PeerStats are one peer's counters: Tx the packets encapsulated (and
// relayed) to it, Rx the packets accepted from it; bytes are inner packet
// bytes, super-packets counted as the packets they stand for.
type PeerStats struct {
	Name      string         `json:"name"`
	Endpoint  netip.AddrPort `json:"endpoint"`
	RxPackets uint64         `json:"rx_packets"`
	RxBytes   uint64         `json:"rx_bytes"`
	TxPackets uint64         `json:"tx_packets"`
	TxBytes   uint64         `json:"tx_bytes"`
}

// Stats reads the counters. Peers are sorted by name.
func (d *Dataplane) Stats() (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Stats{}, errClosed
	}
	st := Stats{Drops: map[string]uint64{}, ToUserspace: map[string]uint64{}}
	var per []uint64
	for r := range numReasons {
		if err := d.objs.Counters.Lookup(uint32(r), &per); err != nil {
			return Stats{}, fmt.Errorf("ebpf: reading counter %v: %w", r, err)
		}
		if r < firstPass {
			st.Drops[r.String()] = sum(per)
		} else {
			st.ToUserspace[r.String()] = sum(per)
		}
	}
	var ps []tunnelPeerStats
	for name, p := range d.peers {
		if err := d.objs.Traffic.Lookup(p.id, &ps); err != nil {
			return Stats{}, fmt.Errorf("ebpf: reading counters of peer %q: %w", name, err)
		}
		s := PeerStats{Name: name, Endpoint: p.endpoint}
		for _, c := range ps {
			s.RxPackets += c.RxPackets
			s.RxBytes += c.RxBytes
			s.TxPackets += c.TxPackets
			s.TxBytes += c.TxBytes
		}
		st.Peers = append(st.Peers, s)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStats) int { return cmpString(a.Name, b.Name) })
	return st, nil
}

func sum(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cebpfPossibleCPUs() int { return cebpf.MustPossibleCPU() }
