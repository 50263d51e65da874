package afpacket

import (
	"sync"

	"golang.org/x/sys/unix"
)

// kernelStats sums PACKET_STATISTICS, which the kernel resets on every
// read.
type kernelStats struct {
	mu  sync.Mutex
	sum KernelStats
}

// KernelStats returns the kernel's counters of the capture socket (both
// paths), summed since open; after Close, the sums as of Close.
func (c *Capture) KernelStats() KernelStats {
	c.ks.mu.Lock()
	defer c.ks.mu.Unlock()
	var st *unix.TpacketStatsV3 // a V1/V2 socket fills the first two fields
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		st, serr = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if err == nil && serr == nil {
		c.ks.sum.Packets += uint64(st.Packets)
		c.ks.sum.Drops += uint64(st.Drops)
		c.ks.sum.QueueFreezes += uint64(st.Freeze_q_cnt)
	}
	return c.ks.sum
}
