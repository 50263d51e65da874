package agent

import "tunnel-agent/dataplane"

// captureCounters are the capture's own drops, which happen before the
// dataplane sees a packet: for status and metrics.
type captureCounters struct {
	truncated   uint64 // frames larger than the read buffer
	gsoDropped  uint64 // packets after a TCP super-packet whose segments filled the batch
	kernelDrops uint64 // frames the kernel dropped: receive buffer or ring full
}

func readCaptureCounters(c *dataplane.PacketCapture) captureCounters {
	if c == nil {
		return captureCounters{}
	}
	return captureCounters{truncated: c.Truncated(), gsoDropped: c.GSODropped(), kernelDrops: c.KernelStats().Drops}
}

// withCapture returns st with the counters of capture c.
func (st Status) withCapture(c *dataplane.PacketCapture) Status {
	cc := readCaptureCounters(c)
	st.CaptureTruncated, st.CaptureGSODropped, st.CaptureKernelDrops = cc.truncated, cc.gsoDropped, cc.kernelDrops
	return st
}
