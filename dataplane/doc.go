// Package dataplane is the packet engine of the tunnel: it moves IP
// packets between a LAN interface and the peer gateways, one end of a
// site-to-site L3 tunnel without a tunnel interface ("plain" mode: the UDP
// payload is the inner IP packet from its header on, nothing added).
//
// The engine makes no system call. It talks to the operating system only
// through the three small interfaces of io.go, Capture, Transport and
// Injector, so that it runs in memory in tests (package dptest) and so
// that another tunnel side can reuse its LAN side. The production
// implementations are in its subpackages: afpacket (the capture:
// AF_PACKET socket or ring, BPF filter, checksum completion, super-packet
// cutting), udp (the tunnel socket: batches, GRO, GSO, path MTU) and rawip
// (injection through raw IP sockets). WireGuard mode (package wireguard)
// runs wireguard-go in place of the tunnel side and shares the Router,
// the LAN side of a gateway (router.go), with the Engine; package ebpf
// runs plain mode as tc programs and hands its exceptions to the Engine.
//
// The Engine (engine.go, configured by Config; config.go) runs three
// goroutines:
//
// LAN→tunnel (the capture goroutine, send.go):
//
//	Capture.ReadBatch → dispatch on the version nibble → parse and check
//	the IPv4 header (IPv6: the fixed header and the extension header
//	chain; parse.go, internal/header), trim link-layer padding → longest
//	prefix match of the destination over all peers' prefixes (prefixes.go)
//	→ the peer's current endpoint (endpoints.go) → act as a router hop:
//	TTL <= 1 answers ICMP time exceeded, a DF packet too big for the
//	peer's path MTU answers ICMP fragmentation needed (icmp.go), otherwise
//	TTL-1 with an incremental checksum fix (IPv6: hop limit, and every
//	packet too big answers ICMPv6 packet too big; icmpv6.go) →
//	Transport.WriteBatch. ICMP errors go back to the LAN through the
//	Injector.
//
// tunnel→LAN (the transport goroutine, receive.go):
//
//	Transport.ReadBatch → sender address → peer (endpoint snapshot, one
//	atomic load per batch) → keepalive (version nibble 0 and its magic,
//	or zero length from older agents): count it, answer a request,
//	learn a peer named by its prefixes (keepalive.go, keepalive_msg.go) →
//	parse the inner IPv4 or IPv6 header, total length must equal the
//	datagram length → the inner source must route back to the sending
//	peer (or the packet is an ICMP error about one of ours sent to that
//	peer: icmp_related.go) and the inner destination must be local →
//	(learn the endpoint of a peer configured without one: endpoints.go)
//	→ a packet larger than the LAN MTU is fragmented (IPv4, DF clear;
//	fragment.go) or answered through the tunnel with fragmentation needed
//	/ packet too big (lanmtu.go) → Injector.WriteBatch. No TTL decrement
//	here: the sending gateway did it. With Config.Relay a destination in
//	another peer's prefixes is sent on to that peer instead (relay.go).
//
// The keepalive goroutine (keepalive.go): a keepalive request to each
// configured endpoint every Keepalive, so NAT and firewall state on the
// path stays open, a learning far end finds us (also after it restarted)
// and its reply tells us it is alive.
//
// Reconfigure and ReplaceCapture change a running engine (reconfig.go).
// Every drop is counted by reason (counters.go) and logged through a
// per-reason limiter (droplog.go).
//
// Per packet the path neither allocates nor locks: buffers are
// preallocated per goroutine, lookups are tables built once (bart, or
// prefixes_hash.go on 32-bit platforms), counters are atomics.
package dataplane
