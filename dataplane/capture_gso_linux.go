package dataplane

// GSODropped is the number of packets dropped because the segments of a
// TCP super-packet before them filled the batch (see gsoSplitter).
func (c *PacketCapture) GSODropped() uint64 { return c.g.dropped.Load() }
