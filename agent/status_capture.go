package agent

// captureCounters are the capture's own drops, which happen before the
// dataplane sees a packet: for status and metrics.
type captureCounters struct {
	truncated   uint64 // frames larger than the read buffer
	gsoDropped  uint64 // packets after a TCP super-packet whose segments filled the batch
	kernelDrops uint64 // frames the kernel dropped: receive buffer or ring full
	unreadable  uint64 // frames the capture could not take apart
}

// plus adds the counters of another capture.
func (c captureCounters) plus(o captureCounters) captureCounters {
	return captureCounters{truncated: c.truncated + o.truncated, gsoDropped: c.gsoDropped + o.gsoDropped,
		kernelDrops: c.kernelDrops + o.kernelDrops, unreadable: c.unreadable + o.unreadable}
}

// withCapture returns st with the capture counters cc.
func (st Status) withCapture(cc captureCounters) Status {
	st.CaptureTruncated, st.CaptureGSODropped, st.CaptureKernelDrops = cc.truncated, cc.gsoDropped, cc.kernelDrops
	st.CaptureUnreadable = cc.unreadable
	return st
}

// withRebinds returns st with the state of the capture's re-binds to a
// re-created LAN interface (watch.go): failed attempts, and whether one
// is being retried now.
func (l *liveSite) withRebinds(st Status) Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st.CaptureRebindFailures, st.CaptureRebindFailing = l.rebind.failures, l.rebind.failing()
	return st
}
