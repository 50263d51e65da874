// Package udp is the tunnel's UDP socket: the dataplane.Transport through
// which the engine sends and receives tunnel datagrams in production.
//
// Listen binds one socket (IPv4, IPv6, or both on [::]) with large
// buffers, and clears DF on the outer datagrams so that the kernel
// fragments an oversized one instead of dropping it (udp_linux.go).
// Datagrams are read and written in batches with recvmmsg(2) and
// sendmmsg(2), without allocating per datagram. Runs of equal-size
// datagrams to one peer leave as one UDP_SEGMENT message (GSO,
// gso_linux.go), and with UDP_GRO the kernel hands over coalesced
// messages, which are split in place into the batch (gro_linux.go,
// gro_split.go); Options turns either off. What the socket drops for its
// size is counted (Truncated), and the kernel's drops are read on demand
// (KernelDrops).
//
// PathMTU reads the kernel's MTU of the route towards a peer's endpoint,
// which the engine's router-hop checks take as the peer's path MTU.
package udp
