package agent

import "tunnel-agent/dataplane/afpacket"

// captureCounters are the capture's own drops, which happen before the
// dataplane sees a packet: for status and metrics.
type captureCounters struct {
	truncated   uint64 // frames larger than the read buffer
	gsoDropped  uint64 // packets after a TCP super-packet whose segments filled the batch
	kernelDrops uint64 // frames the kernel dropped: receive buffer or ring full
	unreadable  uint64 // frames the capture could not take apart
	// Re-binds of the capture to a re-created LAN interface (watch.go):
	// failed attempts, and whether one is being retried now.
	rebindFailures uint64
	rebindFailing  bool
}

func readCaptureCounters(c *afpacket.Capture) captureCounters {
	if c == nil {
		return captureCounters{}
	}
	return captureCounters{truncated: c.Truncated(), gsoDropped: c.GSODropped(), kernelDrops: c.KernelStats().Drops,
		unreadable: c.Unreadable()}
}

// plus adds the counters of another capture.
func (c captureCounters) plus(o captureCounters) captureCounters {
	return captureCounters{truncated: c.truncated + o.truncated, gsoDropped: c.gsoDropped + o.gsoDropped,
		kernelDrops: c.kernelDrops + o.kernelDrops, unreadable: c.unreadable + o.unreadable}
}

// withCapture returns st with the capture counters cc.
func (st Status) withCapture(cc captureCounters) Status {
	st.CaptureTruncated, st.CaptureGSODropped, st.CaptureKernelDrops = cc.truncated, cc.gsoDropped, cc.kernelDrops
	st.CaptureRebindFailures, st.CaptureRebindFailing = cc.rebindFailures, cc.rebindFailing
	st.CaptureUnreadable = cc.unreadable
	return st
}

// captureCounters are the counters of the capture in use: the live site's
// (a re-bind replaces the capture opened at start when the LAN link is
// re-created), or the one opened at start (wireguard mode, or before the
// live site took over).
func (s *statusSource) captureCounters() captureCounters {
	if s.live != nil {
		if cc, ok := s.live.captureCounters(); ok {
			return cc
		}
	}
	return readCaptureCounters(s.capture)
}
