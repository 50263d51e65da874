// Package ebpf runs the plain-mode tunnel (the tutorial's wire format:
// the UDP payload is the inner IP packet from its header on) as two tc
// programs, with no process on the packet path:
//
//   - lan_ingress, at the LAN interface's ingress, encapsulates packets
//     whose destination lies in a peer's prefixes: it acts as a router hop
//     (TTL or hop limit decremented with an incremental checksum fix),
//     pushes an outer IPv4 or IPv6 and UDP header with bpf_skb_adjust_room
//     (the encapsulation flags let the kernel segment super-packets) and
//     redirects the result to the WAN (bpf_fib_lookup, then bpf_redirect
//     or bpf_redirect_neigh).
//   - wan_ingress, at the WAN interface's ingress, decapsulates datagrams to
//     the listen port from known peer endpoints whose inner packet is valid
//     and allowed (its source in the sending peer's prefixes, its
//     destination in the local prefixes), and sends them to the LAN as the
//     kernel routes them; on a hub it relays them to another peer.
//
// What the programs do not handle goes to the userspace engine
// (package dataplane), whose code answers it: LAN-side exceptions (TTL
// expiry, too big, IPv4 options, fragments, IPv6 extension headers, a peer
// without an endpoint) arrive through a perf buffer that Exceptions turns
// into a dataplane.Capture; WAN-side ones (keepalives, unknown senders for
// learning, ...) are left to the agent's UDP socket untouched.
//
// Load creates the maps and programs, SetPeers and SetConfig fill and
// update the maps in place (per entry, so that unchanged peers are never
// disturbed), Attach hooks the programs with tcx links (or, on kernels
// before 6.6, a clsact qdisc and direct-action filters), Stats sums the
// per-CPU counters, and Probe says whether this kernel and process can
// run it at all. Nothing is pinned to bpffs: the maps and programs live as
// long as the process holds them (and, with the clsact fallback, as long
// as the filters exist).
package ebpf
