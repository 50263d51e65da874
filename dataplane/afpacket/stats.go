package afpacket

// KernelStats are the kernel's counters of a capture socket
// (PACKET_STATISTICS), summed since the capture was opened.
type KernelStats struct {
	// Packets is the number of frames that passed the filter, the
	// dropped ones included.
	Packets uint64 `json:"packets"`
	// Drops is the number of those the kernel dropped because the
	// capture did not keep up: its receive buffer (socket path) or every
	// block of its ring (ring) was full.
	Drops uint64 `json:"drops"`
	// QueueFreezes (ring only) is how often the ring filled up and the
	// kernel stopped filling it until a block came back (tp_freeze_q_cnt).
	QueueFreezes uint64 `json:"queue_freezes"`
}
