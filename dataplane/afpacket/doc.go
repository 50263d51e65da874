// Package afpacket captures, with an AF_PACKET socket, the IP packets that
// arrive on a LAN interface for the tunnel: the dataplane.Capture that the
// engine reads in production.
//
// Open binds the socket to one interface behind a classic BPF filter that
// keeps only inbound IPv4 and IPv6 packets for this host whose destination
// lies in the peers' prefixes (filter.go; SetPrefixes swaps it on a
// reload). Frames are received in batches, with recvmmsg(2) straight into
// the caller's buffers or, with Options.Ring, copied out of a TPACKET_V3
// ring mapped into the process (ring_linux.go, ring_walk.go), their
// link-layer and virtio-net headers stripped (link_linux.go). Before a
// batch is returned, the checksums a sender left to offload are completed
// (checksum.go) and TCP and UDP GSO super-packets are cut into the
// segments the sender meant (segment.go, split.go). What the capture
// drops itself is counted (Truncated, Unreadable, GSODropped), and the
// kernel's drops are read on demand (KernelStats).
//
// A read that fails because the interface went down wraps
// dataplane.ErrInterfaceDown, and the engine keeps reading.
package afpacket
