// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// Plain-mode tunnel at tc: the tutorial's wire format (the UDP payload is
// the inner IP packet from its header on, nothing added) without a process
// on the packet path.
//
//   lan_ingress  (tc ingress of the LAN interface): a packet whose
//                destination lies in a peer's prefixes is checked like a
//                router hop, gets an outer IPv4 or IPv6 + UDP header and is
//                redirected to the WAN. What the program does not handle
//                (TTL expiry, too big, IPv4 options, fragments, IPv6
//                extension headers, unknown endpoint...) is copied to
//                userspace through the exceptions perf array and dropped
//                here: the userspace engine answers it (ICMP errors) or
//                sends it itself.
//   wan_ingress  (tc ingress of the WAN interface): a datagram to the
//                listen port from a known peer endpoint whose inner packet
//                is valid and allowed loses its outer headers and goes to
//                the LAN (or, on a hub, on to another peer). Anything else
//                is left untouched (TC_ACT_OK) for the agent's UDP socket.
//
// The checks and their order follow dataplane/engine_capture.go (forward),
// engine_transport.go (receive, admit) and engine_relay.go, so that every
// verdict here is one the userspace engine would give; the Go tests compare
// them packet by packet.
//
// Only the UAPI header for __sk_buff and the helper definitions are
// included; the packet headers are read at explicit offsets (the layouts
// of <linux/ip.h> depend on the build host's byte order).

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Not in the 6.1 UAPI headers Debian 12 ships; added in Linux 6.3.
#define ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define PACKET_HOST 0

#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define UDP_HLEN 8
#define OUTER4_LEN (IPV4_HLEN + UDP_HLEN)
#define OUTER6_LEN (IPV6_HLEN + UDP_HLEN)
#define IPV6_MIN_MTU 1280

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMPV6 58

#define AF_INET 2
#define AF_INET6 10

// Largest exception copied to userspace: a perf record's size is a u16.
#define EXCEPTION_MAX 65000

// ---- Shared with Go (bpf2go generates the types) ----

// reason indexes the counters map. Drops use the userspace engine's
// reason names (dataplane/counters.go); passes name why a packet went to
// the userspace path instead. Keep in step with reasons.go.
enum reason {
	DROP_TOO_SHORT,
	DROP_BAD_HEADER,
	DROP_NOT_IPV4,
	DROP_SRC_NOT_ALLOWED,
	DROP_DST_NOT_ALLOWED,
	DROP_EXCEPTION_LOST,
	DROP_BAD_CHECKSUM,
	PASS_TTL,
	PASS_TOO_BIG,
	PASS_IPV4_OPTIONS,
	PASS_FRAGMENT,
	PASS_IPV6_EXTENSION,
	PASS_NO_ENDPOINT,
	PASS_NO_ROUTE,
	PASS_CHECKSUM,
	PASS_GSO,
	PASS_KEEPALIVE,
	PASS_UNKNOWN_SENDER,
	PASS_OUTER_HEADER,
	PASS_RELAY_FAMILY,
	PASS_HELPER_ERROR,
	PASS_ICMP_ERROR,
	PASS_TO_HOST,
	REASON_MAX,
};

// settings is the only entry of the settings map.
struct settings {
	__u8 listen_addr[16]; // IPv4 in the first 4 bytes; all zero: any
	__u8 listen_family;   // 0 (any), 4 or 6
	__u8 relay;           // hub: relay between peers
	__be16 listen_port;   // UDP port of the tunnel, network order
	__u32 lan_ifindex;    // where decapsulated packets leave
	__u32 wan_ifindex;    // default egress of outer packets
	__u16 lan_mtu;        // larger inner packets go to userspace; 0: no limit
	__u16 _pad;
};

// peer is one peer's entry in the peers array, indexed by peer id.
struct peer {
	__u8 addr[16]; // endpoint address; IPv4 in the first 4 bytes
	__u8 src[16];  // outer source; all zero: no route (userspace sends)
	__u8 family;   // 0: no endpoint known, 4 or 6
	__u8 _pad;
	__be16 port;     // endpoint port, network order
	__u16 path_mtu;  // MTU of the outer path
	__u16 _pad2;
	__u32 ifindex;   // egress of outer packets; 0: settings.wan_ifindex
};

// endpoint_key is the key of the endpoints hash: where datagrams from a
// peer come from.
struct endpoint_key {
	__u8 addr[16];
	__u8 family;
	__u8 _pad;
	__be16 port;
};

struct lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct peer_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
};

// exception_meta heads every exception record; the frame (from its
// Ethernet header on, len bytes) follows.
struct exception_meta {
	__u32 len;
	__u16 gso_size;
	__u8 reason;
	__u8 l2_len;
};

// Sizes are set from Go before loading (Config).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} config SEC(".maps");

// A hash rather than an array although the keys are dense: an update
// replaces the element as a whole (RCU), so a program never reads a peer
// half old, half new while its endpoint changes.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct peer_stats);
} traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct endpoint_key);
	__type(value, __u32);
} endpoints SEC(".maps");

// This host's own addresses (port 0): packets to them are delivered to
// the local stack, not sent out of the LAN.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct endpoint_key);
	__type(value, __u8);
} host_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, __u32);
} routes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, __u32);
} routes6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, __u8);
} local4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, __u8);
} local6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} exceptions SEC(".maps");

// Scratch space for summing a datagram (outer_checksum_ok): a chunk is
// copied here and summed, since bpf_csum_diff takes a size that must be a
// multiple of 4 and the packet's own bytes end where they end.
#define CSUM_CHUNK 512
struct csum_scratch {
	__u8 b[CSUM_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct csum_scratch);
} scratch SEC(".maps");

// ---- Small helpers ----

static __always_inline void count(enum reason r)
{
	__u32 k = r;
	__u64 *c = bpf_map_lookup_elem(&counters, &k);
	if (c)
		*c += 1;
}

static __always_inline void count_peer(__u32 id, int tx, __u64 packets, __u64 bytes)
{
	struct peer_stats *s = bpf_map_lookup_elem(&traffic, &id);
	if (!s)
		return;
	if (tx) {
		s->tx_packets += packets;
		s->tx_bytes += bytes;
	} else {
		s->rx_packets += packets;
		s->rx_bytes += bytes;
	}
}

// to_userspace copies the frame to the exceptions perf array for the
// userspace engine and drops it here.
static __always_inline int to_userspace(struct __sk_buff *skb, enum reason r)
{
	struct exception_meta m = {
		.len = skb->len,
		.gso_size = skb->gso_size,
		.reason = r,
		.l2_len = ETH_HLEN,
	};
	count(r);
	if (skb->len > EXCEPTION_MAX ||
	    bpf_perf_event_output(skb, &exceptions, BPF_F_CURRENT_CPU | ((__u64)skb->len << 32), &m, sizeof(m)))
		count(DROP_EXCEPTION_LOST);
	return TC_ACT_SHOT;
}

// drop counts a drop for reason r.
static __always_inline int drop(enum reason r)
{
	count(r);
	return TC_ACT_SHOT;
}

// pass leaves a tunnel datagram to the agent's socket, counting why.
static __always_inline int pass(enum reason r)
{
	count(r);
	return TC_ACT_OK;
}

static __always_inline __u32 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

// sum32 adds n 32-bit words at p (already bounds-checked by the caller).
static __always_inline __u64 sum32(const void *p, int n)
{
	const __u32 *w = p;
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < n; i++)
		s += w[i];
	return s;
}

// Sums are kept in network byte order words (as loaded): the ones'
// complement sum is byte-order independent (RFC 1071 §2(B)) as long as
// every term is, so constants go through bpf_htons/bpf_htonl.

// ipv4_header_ok reports whether the 20-byte header at ip has a valid
// checksum.
static __always_inline int ipv4_header_ok(const void *ip)
{
	return fold(sum32(ip, 5)) == 0xffff;
}

// ttl_decrement lowers an IPv4 TTL by one and patches the header checksum
// per RFC 1624 eqn. 3, exactly like dataplane's decrementTTL.
static __always_inline void ttl_decrement(__u8 *ip)
{
	__u16 old = ((__u16)ip[8] << 8) | ip[9];
	__u16 new = old - 0x0100;
	__u16 hc = ((__u16)ip[10] << 8) | ip[11];
	__u32 s = (__u16)~hc + (__u16)~old + new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	hc = ~s;
	ip[8]--;
	ip[10] = hc >> 8;
	ip[11] = hc;
}

static __always_inline int is_ipv6_extension(__u8 nh)
{
	switch (nh) {
	case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140:
		return 1;
	}
	return 0;
}

// inner describes the inner packet as the outer header needs it.
struct inner {
	__u32 len;     // IP total length
	__u32 segs;    // packets it stands for (GSO segments, else 1)
	__u32 bytes;   // bytes of those packets
	__u64 l4sum;   // ones' complement sum of the inner packet (IPv6 outer)
	__u8 proto;    // upper layer
	__u8 v6;       // inner is IPv6
	__u8 csum_ok;  // l4sum is known
};

// inner_sum computes, for an IPv6 outer header, the ones' complement sum
// of the whole inner packet from its headers alone ("local checksum
// offload", as the kernel's lco_csum): a valid IPv4 header sums to zero,
// and an upper layer whose checksum is (or will be, for CHECKSUM_PARTIAL)
// correct sums to the complement of its pseudo-header. That holds for TCP,
// UDP with a checksum, ICMPv6, and ICMP (no pseudo-header: zero). ip
// points at the inner header, already bounds-checked for its fixed part;
// ihl is 20 for IPv4. The hop limit or TTL must already be decremented.
static __always_inline void inner_sum(struct inner *in, const __u8 *ip, __u16 udp_check)
{
	__u64 pseudo;
	in->csum_ok = 0;
	if (!in->v6) {
		if (in->proto == PROTO_ICMP) {
			in->l4sum = 0;
			in->csum_ok = 1;
			return;
		}
		if (in->proto != PROTO_TCP && !(in->proto == PROTO_UDP && udp_check != 0))
			return;
		pseudo = sum32(ip + 12, 2) + bpf_htons(in->proto) + bpf_htons(in->len - IPV4_HLEN);
		in->l4sum = (__u16)~fold(pseudo);
		in->csum_ok = 1;
		return;
	}
	if (in->proto != PROTO_TCP && in->proto != PROTO_UDP && in->proto != PROTO_ICMPV6)
		return;
	pseudo = sum32(ip + 8, 8) + bpf_htons(in->proto) + bpf_htonl(in->len - IPV6_HLEN);
	in->l4sum = (__u16)~fold(pseudo) + sum32(ip, 10);
	in->csum_ok = 1;
}

// partial_inner reports whether the inner TCP or UDP checksum field holds
// only the pseudo-header sum: the sender left it to offload
// (CHECKSUM_PARTIAL, which tc cannot see). The outer IPv6 checksum,
// computed from the inner one, would be wrong, and completing the inner
// one takes the whole segment: the packet goes to userspace, whose reader
// completes it. A complete checksum equal to its pseudo-header sum (one in
// 65536) takes that path too, harmlessly.
static __always_inline int partial_inner(struct __sk_buff *skb, const __u8 *ip, const struct inner *in, __u32 l3hdr)
{
	__u32 off;
	if (in->proto == PROTO_TCP)
		off = 16;
	else if (in->proto == PROTO_UDP)
		off = 6;
	else
		return 0;
	__u16 field;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + l3hdr + off, &field, 2))
		return 1;
	__u64 pseudo;
	if (in->v6)
		pseudo = sum32(ip + 8, 8) + bpf_htons(in->proto) + bpf_htonl(in->len - IPV6_HLEN);
	else
		pseudo = sum32(ip + 12, 2) + bpf_htons(in->proto) + bpf_htons(in->len - IPV4_HLEN);
	return field == (__u16)fold(pseudo);
}

// outer_len is the size of the outer headers towards p.
static __always_inline __u32 outer_len(const struct peer *p)
{
	return p->family == 4 ? OUTER4_LEN : OUTER6_LEN;
}

// egress is the interface the outer packets to p leave by, or 0 when the
// program cannot send them: no source address (the agent found no route
// to the endpoint yet), or no interface.
static __always_inline __u32 egress(const struct peer *p, const struct settings *cfg)
{
	const __u32 *src = (const __u32 *)p->src;
	if (!(src[0] | src[1] | src[2] | src[3]))
		return 0;
	return p->ifindex ? p->ifindex : cfg->wan_ifindex;
}

// write_outer fills the outer IP and UDP headers at ETH_HLEN of a packet
// whose room is already made, with inner in->len bytes after them, and
// the EtherType (bpf_redirect_neigh writes the addresses).
static __always_inline int write_outer(struct __sk_buff *skb, const struct peer *p,
				       const struct settings *cfg, const struct inner *in)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;
	if (p->family == 4) {
		if (data + ETH_HLEN + OUTER4_LEN > data_end)
			return -1;
		__u8 *ip = data + ETH_HLEN;
		__u8 *udp = ip + IPV4_HLEN;
		__u16 tot = in->len + OUTER4_LEN;
		__u16 id = bpf_get_prandom_u32();
		eth[12] = ETH_P_IP >> 8;
		eth[13] = ETH_P_IP & 0xff;
		ip[0] = 0x45;
		ip[1] = 0;
		ip[2] = tot >> 8;
		ip[3] = tot;
		ip[4] = id >> 8;
		ip[5] = id;
		ip[6] = 0; // no DF, like the agent's socket (IP_PMTUDISC_DONT)
		ip[7] = 0;
		ip[8] = 64;
		ip[9] = PROTO_UDP;
		ip[10] = 0;
		ip[11] = 0;
		__builtin_memcpy(ip + 12, p->src, 4);
		__builtin_memcpy(ip + 16, p->addr, 4);
		*(__u16 *)(ip + 10) = ~fold(sum32(ip, 5)); // sums of native loads: store natively
		__u16 ulen = in->len + UDP_HLEN;
		*(__be16 *)(udp + 0) = cfg->listen_port;
		*(__be16 *)(udp + 2) = p->port;
		udp[4] = ulen >> 8;
		udp[5] = ulen;
		udp[6] = 0; // IPv4: no UDP checksum
		udp[7] = 0;
	} else {
		if (data + ETH_HLEN + OUTER6_LEN > data_end)
			return -1;
		__u8 *ip = data + ETH_HLEN;
		__u8 *udp = ip + IPV6_HLEN;
		__u16 ulen = in->len + UDP_HLEN;
		eth[12] = ETH_P_IPV6 >> 8;
		eth[13] = ETH_P_IPV6 & 0xff;
		*(__u32 *)ip = bpf_htonl(0x60000000);
		ip[4] = ulen >> 8;
		ip[5] = ulen;
		ip[6] = PROTO_UDP;
		ip[7] = 64;
		__builtin_memcpy(ip + 8, p->src, 16);
		__builtin_memcpy(ip + 24, p->addr, 16);
		*(__be16 *)(udp + 0) = cfg->listen_port;
		*(__be16 *)(udp + 2) = p->port;
		udp[4] = ulen >> 8;
		udp[5] = ulen;
		udp[6] = 0;
		udp[7] = 0;
		// Pseudo-header, UDP header, inner packet.
		__u64 s = sum32(ip + 8, 8) + bpf_htonl(ulen) + bpf_htons(PROTO_UDP) +
			  sum32(udp, 2) + in->l4sum;
		__u16 c = ~fold(s);
		*(__u16 *)(udp + 6) = c ? c : 0xffff;
	}
	return 0;
}

// send redirects a packet out of ifindex the way the kernel would route
// it from there. The route is looked up first with bpf_fib_lookup (from
// the egress's side: oif ifindex, the packet's addresses, TOS and
// protocol), without the neighbour, and the packet is handed to
// bpf_redirect_neigh with the next hop found: the neighbour subsystem
// still resolves the address and keeps the entry fresh (unlike writing
// the MAC addresses from the lookup and bpf_redirect, which would send to
// a stale entry forever), but no route cache entry is taken and released
// per packet, which bpf_redirect_neigh without a next hop does
// (ip_route_output_flow). Whatever the lookup does not answer with a
// unicast route out of ifindex itself (forwarding off on ifindex, which
// bpf_fib_lookup requires; no route or another interface; local,
// blackhole, unreachable; a packet larger than the MTU; a mark, which
// policy routing may use and bpf_fib_lookup does not take) goes to
// bpf_redirect_neigh without a next hop, which routes it itself and needs
// no forwarding enabled: the userspace engine, which sends through a
// socket and injects through a raw socket, does not either.
static __always_inline int send(struct __sk_buff *skb, __u32 ifindex)
{
	skb->tstamp = 0; // an rx timestamp is no departure time for fq
	if (skb->mark)
		return bpf_redirect_neigh(ifindex, NULL, 0, 0);
	struct bpf_fib_lookup fib = {};
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	if ((void *)(ip + IPV4_HLEN) <= data_end && ip[0] >> 4 == 4) {
		fib.family = AF_INET;
		fib.tos = ip[1];
		fib.l4_protocol = ip[9];
		__builtin_memcpy(&fib.ipv4_src, ip + 12, 4);
		__builtin_memcpy(&fib.ipv4_dst, ip + 16, 4);
	} else if ((void *)(ip + IPV6_HLEN) <= data_end && ip[0] >> 4 == 6) {
		fib.family = AF_INET6;
		fib.flowinfo = *(__be32 *)ip & bpf_htonl(0x0fffffff);
		fib.l4_protocol = ip[6];
		__builtin_memcpy(fib.ipv6_src, ip + 8, 16);
		__builtin_memcpy(fib.ipv6_dst, ip + 24, 16);
	} else {
		return bpf_redirect_neigh(ifindex, NULL, 0, 0);
	}
	fib.ifindex = ifindex;
	long r = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (r != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != ifindex)
		return bpf_redirect_neigh(ifindex, NULL, 0, 0);
	// The next hop: the gateway, or the destination itself on a link
	// route; an IPv4 route may have an IPv6 gateway (family AF_INET6).
	struct bpf_redir_neigh nh = {.nh_family = fib.family};
	__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16); // ipv4_nh is its first word
	return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
}

static __always_inline const struct settings *get_settings(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

// ---- LAN ingress: encapsulate ----

// encap_gso_fits computes the segment size of a GSO packet (TCP or UDP
// over an inner header of ihl bytes) into *seg and its per-segment header
// size into *hdrs. It returns 0 if it cannot (not TCP/UDP).
static __always_inline int gso_segment_size(struct __sk_buff *skb, __u32 ihl, __u8 proto,
					    __u32 *seg, __u32 *hdrs)
{
	__u32 l4 = 0;
	if (proto == PROTO_UDP) {
		l4 = UDP_HLEN;
	} else if (proto == PROTO_TCP) {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + ihl + 12, &doff, 1))
			return 0;
		l4 = (doff >> 4) * 4;
		if (l4 < 20)
			return 0;
	} else {
		return 0;
	}
	*hdrs = ihl + l4;
	*seg = ihl + l4 + skb->gso_size;
	return 1;
}

// encap pushes the outer headers for peer p in front of the inner packet
// (already checked, TTL decremented) and sends it. ip points at the inner
// header in the linear area; the pointers are invalid afterwards.
static __always_inline int encap(struct __sk_buff *skb, const struct peer *p, const struct settings *cfg,
				 __u32 oif, const struct inner *in)
{
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      (p->family == 4 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV6);
	if (bpf_skb_adjust_room(skb, outer_len(p), BPF_ADJ_ROOM_MAC, flags))
		return -1;
	if (write_outer(skb, p, cfg, in))
		return -2;
	return send(skb, oif);
}

// ensure_linear makes the first n bytes of the frame readable directly.
static __always_inline int ensure_linear(struct __sk_buff *skb, __u32 n)
{
	if ((void *)(long)skb->data + n <= (void *)(long)skb->data_end)
		return 0;
	if (n > skb->len)
		return -1;
	return bpf_skb_pull_data(skb, n);
}

// check_size decides whether the inner packet fits the tunnel to p
// without fragmentation and fills the segment accounting of in. It
// returns 0 or a pass reason.
static __always_inline int check_size(struct __sk_buff *skb, const struct peer *p,
				      struct inner *in, __u32 ihl)
{
	__u32 room = p->path_mtu - outer_len(p);
	in->segs = 1;
	in->bytes = in->len;
	if (skb->gso_size) {
		__u32 seg = 0, hdrs = 0;
		if (p->family == 6)
			return PASS_GSO; // no per-segment outer checksum (see report)
		if (!gso_segment_size(skb, ihl, in->proto, &seg, &hdrs))
			return PASS_GSO;
		if (seg > room)
			return PASS_TOO_BIG;
		in->segs = skb->gso_segs ? skb->gso_segs : 1;
		in->bytes = in->len + (in->segs - 1) * hdrs;
		return 0;
	}
	if (in->len > room)
		return PASS_TOO_BIG;
	return 0;
}

static __always_inline int lan_ipv4(struct __sk_buff *skb, const struct settings *cfg)
{
	if (ensure_linear(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK; // too short to carry a destination: not ours
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	if ((void *)(ip + IPV4_HLEN) > data_end || ip[0] >> 4 != 4)
		return TC_ACT_OK; // the stack drops it

	struct lpm4_key k = {.prefixlen = 32};
	__builtin_memcpy(k.addr, ip + 16, 4);
	__u32 *idp = bpf_map_lookup_elem(&routes4, &k);
	if (!idp)
		return TC_ACT_OK; // not for a peer: the gateway's own business
	__u32 id = *idp;

	__u32 l3len = skb->len - ETH_HLEN;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (ihl < IPV4_HLEN || tot < ihl)
		return drop(DROP_BAD_HEADER);
	if (l3len < tot)
		return drop(DROP_TOO_SHORT);
	if (ihl != IPV4_HLEN)
		return to_userspace(skb, PASS_IPV4_OPTIONS);
	if (!ipv4_header_ok(ip))
		return drop(DROP_BAD_HEADER);

	struct peer *p = bpf_map_lookup_elem(&peers, &id);
	if (!p || p->family == 0)
		return to_userspace(skb, PASS_NO_ENDPOINT);
	if (ip[8] <= 1)
		return to_userspace(skb, PASS_TTL);
	if ((ip[6] & 0x3f) | ip[7]) // MF or a fragment offset
		return to_userspace(skb, PASS_FRAGMENT);

	struct inner in = {.len = tot, .proto = ip[9]};
	int r = check_size(skb, p, &in, ihl);
	if (r)
		return to_userspace(skb, r);

	__u16 udp_check = 0;
	if (p->family == 6 && in.proto == PROTO_UDP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV4_HLEN + 6, &udp_check, 2))
			return to_userspace(skb, PASS_CHECKSUM);
	}
	__u32 oif = egress(p, cfg);
	if (!oif)
		return to_userspace(skb, PASS_NO_ROUTE);

	// Link-layer padding (short Ethernet frames) is not part of the packet.
	if (l3len > tot && !skb->gso_size) {
		if (bpf_skb_change_tail(skb, ETH_HLEN + tot, 0))
			return to_userspace(skb, PASS_HELPER_ERROR);
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + IPV4_HLEN) > data_end)
		return to_userspace(skb, PASS_HELPER_ERROR);
	if (p->family == 6) {
		if (partial_inner(skb, ip, &in, IPV4_HLEN))
			return to_userspace(skb, PASS_CHECKSUM);
		// Independent of the TTL: a valid IPv4 header sums to zero.
		inner_sum(&in, ip, udp_check);
		if (!in.csum_ok)
			return to_userspace(skb, PASS_CHECKSUM);
	}
	ttl_decrement(ip);
	count_peer(id, 1, in.segs, in.bytes);
	r = encap(skb, p, cfg, oif, &in);
	if (r < 0)
		return drop(DROP_EXCEPTION_LOST); // header room could not be made
	return r;
}

static __always_inline int lan_ipv6(struct __sk_buff *skb, const struct settings *cfg)
{
	if (ensure_linear(skb, ETH_HLEN + IPV6_HLEN))
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	if ((void *)(ip + IPV6_HLEN) > data_end || ip[0] >> 4 != 6)
		return TC_ACT_OK;

	struct lpm6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, ip + 24, 16);
	__u32 *idp = bpf_map_lookup_elem(&routes6, &k);
	if (!idp)
		return TC_ACT_OK;
	__u32 id = *idp;

	__u32 l3len = skb->len - ETH_HLEN;
	__u32 plen = ((__u32)ip[4] << 8) | ip[5];
	__u8 nh = ip[6];
	if (is_ipv6_extension(nh))
		return to_userspace(skb, PASS_IPV6_EXTENSION);
	__u32 tot = IPV6_HLEN + plen;
	if (l3len < tot)
		return drop(DROP_TOO_SHORT);

	struct peer *p = bpf_map_lookup_elem(&peers, &id);
	if (!p || p->family == 0)
		return to_userspace(skb, PASS_NO_ENDPOINT);
	if (ip[7] <= 1)
		return to_userspace(skb, PASS_TTL);

	struct inner in = {.len = tot, .proto = nh, .v6 = 1};
	int r = check_size(skb, p, &in, IPV6_HLEN);
	if (r)
		return to_userspace(skb, r);
	if (p->family == 6 && nh != PROTO_TCP && nh != PROTO_UDP && nh != PROTO_ICMPV6)
		return to_userspace(skb, PASS_CHECKSUM);
	if (p->family == 6 && nh == PROTO_UDP) {
		__u16 check = 0; // 0 is invalid over IPv6 and would make the outer one wrong
		if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN + 6, &check, 2) || !check)
			return to_userspace(skb, PASS_CHECKSUM);
	}

	__u32 oif = egress(p, cfg);
	if (!oif)
		return to_userspace(skb, PASS_NO_ROUTE);

	if (l3len > tot && !skb->gso_size) {
		if (bpf_skb_change_tail(skb, ETH_HLEN + tot, 0))
			return to_userspace(skb, PASS_HELPER_ERROR);
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + IPV6_HLEN) > data_end)
		return to_userspace(skb, PASS_HELPER_ERROR);
	if (p->family == 6 && partial_inner(skb, ip, &in, IPV6_HLEN))
		return to_userspace(skb, PASS_CHECKSUM);
	ip[7]--; // hop limit; IPv6 has no header checksum
	if (p->family == 6)
		inner_sum(&in, ip, 0);
	count_peer(id, 1, in.segs, in.bytes);
	r = encap(skb, p, cfg, oif, &in);
	if (r < 0)
		return drop(DROP_EXCEPTION_LOST);
	return r;
}

SEC("tc")
int lan_ingress(struct __sk_buff *skb)
{
	if (skb->pkt_type != PACKET_HOST || skb->vlan_present)
		return TC_ACT_OK;
	const struct settings *cfg = get_settings();
	if (!cfg)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return lan_ipv4(skb, cfg);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return lan_ipv6(skb, cfg);
	return TC_ACT_OK;
}

// ---- WAN ingress: decapsulate ----

// same_words compares n 32-bit words.
static __always_inline int same_words(const void *a, const void *b, int n)
{
	const __u32 *x = a, *y = b;
	__u32 diff = 0;
#pragma unroll
	for (int i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

// outer describes a tunnel datagram's outer headers.
struct outer {
	__u32 len;    // outer IP + UDP header bytes
	__u32 inner;  // UDP payload length
	__u32 sender; // peer id of the source endpoint
	__u8 v6;
};

// deliver strips the outer headers and hands the inner packet to the LAN
// as the kernel routes it from there, what the userspace engine's raw
// socket injection does; a packet for one of this host's own addresses
// (the host_addrs map) is left to the userspace path.
static __always_inline int deliver(struct __sk_buff *skb, const struct settings *cfg, const struct outer *o,
				   const __u8 *ip, int v6)
{
	if (!cfg->lan_ifindex)
		return pass(PASS_NO_ROUTE);
	struct endpoint_key self = {.family = v6 ? 6 : 4};
	if (v6)
		__builtin_memcpy(self.addr, ip + 24, 16);
	else
		__builtin_memcpy(self.addr, ip + 16, 4);
	// For this host: the userspace path injects it (a raw socket's local
	// output). Handed to the stack here it would arrive on the WAN with
	// a source behind the tunnel, whose route is a blackhole: reverse
	// path filtering (rp_filter 1 or 2) would drop it.
	if (bpf_map_lookup_elem(&host_addrs, &self))
		return pass(PASS_TO_HOST);
	__u32 segs = 1, bytes = o->inner;
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	if (skb->gso_size) {
		// A TCP super-packet another gateway's program encapsulated
		// (over a veth, GSO packets cross whole): stripping the outer
		// headers leaves the inner one, still cut at the same MSS.
		__u32 ihl = v6 ? IPV6_HLEN : IPV4_HLEN, hdrs = 0, seg = 0;
		if ((v6 ? ip[6] : ip[9]) != PROTO_TCP ||
		    !gso_segment_size(skb, o->len + ihl, PROTO_TCP, &seg, &hdrs))
			return pass(PASS_GSO);
		hdrs -= o->len;
		segs = o->inner > hdrs ? (o->inner - hdrs + skb->gso_size - 1) / skb->gso_size : 1;
		bytes = o->inner + (segs - 1) * hdrs;
		if (cfg->lan_mtu && seg - o->len > cfg->lan_mtu)
			return pass(PASS_TOO_BIG);
	} else if (cfg->lan_mtu && o->inner > cfg->lan_mtu) {
		return pass(PASS_TOO_BIG);
	}
	if (v6 != o->v6)
		flags |= v6 ? ADJ_ROOM_DECAP_L3_IPV6 : ADJ_ROOM_DECAP_L3_IPV4;
	if (bpf_skb_adjust_room(skb, -(__s32)o->len, BPF_ADJ_ROOM_MAC, flags))
		return pass(PASS_HELPER_ERROR); // e.g. a kernel without the decap flags
	count_peer(o->sender, 0, segs, bytes);
	if (skb->len > ETH_HLEN + o->inner)
		bpf_skb_change_tail(skb, ETH_HLEN + o->inner, 0); // outer padding
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;
	if (data + ETH_HLEN > data_end)
		return TC_ACT_SHOT;
	eth[12] = v6 ? ETH_P_IPV6 >> 8 : ETH_P_IP >> 8;
	eth[13] = v6 ? ETH_P_IPV6 & 0xff : ETH_P_IP & 0xff;
	return send(skb, cfg->lan_ifindex);
}

// relay sends a packet from peer o->sender on to peer id (a hub), in place:
// the outer headers are rewritten, the inner TTL or hop limit decremented.
static __always_inline int relay(struct __sk_buff *skb, const struct settings *cfg, const struct outer *o,
				 __u32 id, int v6)
{
	if (skb->gso_size)
		return pass(PASS_GSO);
	struct peer *p = bpf_map_lookup_elem(&peers, &id);
	if (!p || p->family == 0)
		return pass(PASS_NO_ENDPOINT);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN + o->len;
	if ((void *)(ip + IPV6_HLEN) > data_end && (v6 || (void *)(ip + IPV4_HLEN) > data_end))
		return pass(PASS_HELPER_ERROR);
	if ((void *)(ip + IPV4_HLEN) > data_end)
		return pass(PASS_HELPER_ERROR);
	__u8 hops = v6 ? ip[7] : ip[8];
	if (hops <= 1)
		return pass(PASS_TTL);
	struct inner in = {.len = o->inner, .proto = v6 ? ip[6] : ip[9], .v6 = v6, .segs = 1, .bytes = o->inner};
	if (in.len > p->path_mtu - outer_len(p))
		return pass(PASS_TOO_BIG);
	if ((p->family == 6) != o->v6)
		return pass(PASS_RELAY_FAMILY);
	__u16 udp_check = 0;
	if (p->family == 6 && !v6 && in.proto == PROTO_UDP &&
	    bpf_skb_load_bytes(skb, ETH_HLEN + o->len + IPV4_HLEN + 6, &udp_check, 2))
		return pass(PASS_CHECKSUM);
	__u32 oif = egress(p, cfg);
	if (!oif)
		return pass(PASS_NO_ROUTE);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN + o->len;
	if (v6) {
		if ((void *)(ip + IPV6_HLEN) > data_end)
			return pass(PASS_HELPER_ERROR);
		ip[7]--;
		if (p->family == 6) {
			inner_sum(&in, ip, 0);
			if (!in.csum_ok) {
				ip[7]++;
				return pass(PASS_CHECKSUM);
			}
		}
	} else {
		if ((void *)(ip + IPV4_HLEN) > data_end)
			return pass(PASS_HELPER_ERROR);
		if (p->family == 6) {
			inner_sum(&in, ip, udp_check);
			if (!in.csum_ok)
				return pass(PASS_CHECKSUM);
		}
		ttl_decrement(ip);
	}
	if (write_outer(skb, p, cfg, &in))
		return TC_ACT_SHOT;
	count_peer(o->sender, 0, 1, o->inner);
	count_peer(id, 1, 1, o->inner);
	return send(skb, oif);
}

// icmp_error_type reports whether the ICMP (v6: ICMPv6) message at off is
// an error the engine's related-error rule may admit: IPv4 destination
// unreachable, time exceeded, parameter problem; ICMPv6 destination
// unreachable, packet too big, time exceeded, parameter problem.
static __always_inline int icmp_error_type(struct __sk_buff *skb, __u32 off, int v6)
{
	__u8 type;
	if (bpf_skb_load_bytes(skb, off, &type, 1))
		return 0;
	if (v6)
		return type >= 1 && type <= 4;
	return type == 3 || type == 11 || type == 12;
}

// admit4 checks an inner IPv4 packet of o->inner bytes at offset off.
static __always_inline int admit4(struct __sk_buff *skb, const struct settings *cfg, const struct outer *o)
{
	__u32 off = ETH_HLEN + o->len;
	if (o->inner < IPV4_HLEN)
		return drop(DROP_TOO_SHORT);
	if (ensure_linear(skb, off + IPV4_HLEN))
		return pass(PASS_HELPER_ERROR);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + off;
	if ((void *)(ip + IPV4_HLEN) > data_end)
		return pass(PASS_HELPER_ERROR);
	__u32 ihl = (ip[0] & 0x0f) * 4;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (ihl < IPV4_HLEN || tot < ihl)
		return drop(DROP_BAD_HEADER);
	if (o->inner < tot)
		return drop(DROP_TOO_SHORT);
	if (ihl != IPV4_HLEN)
		return pass(PASS_IPV4_OPTIONS);
	if (skb->gso_size && tot != o->inner)
		return pass(PASS_GSO); // several datagrams (UDP GSO): the socket splits them
	if (!ipv4_header_ok(ip) || tot != o->inner)
		return drop(DROP_BAD_HEADER);

	struct lpm4_key k = {.prefixlen = 32};
	__builtin_memcpy(k.addr, ip + 12, 4);
	__u32 *src = bpf_map_lookup_elem(&routes4, &k);
	// An ICMP error from a source in no peer's prefixes may be about a
	// packet this site sent (a far router's "fragmentation needed"): the
	// engine's related-error rule decides (dataplane/engine_icmp_related.go).
	if (!src && ip[9] == PROTO_ICMP && icmp_error_type(skb, off + IPV4_HLEN, 0))
		return pass(PASS_ICMP_ERROR);
	if (!src || *src != o->sender)
		return drop(DROP_SRC_NOT_ALLOWED);
	__builtin_memcpy(k.addr, ip + 16, 4);
	if (bpf_map_lookup_elem(&local4, &k))
		return deliver(skb, cfg, o, ip, 0);
	if (cfg->relay) {
		__u32 *dst = bpf_map_lookup_elem(&routes4, &k);
		if (dst && *dst != o->sender)
			return relay(skb, cfg, o, *dst, 0);
	}
	return drop(DROP_DST_NOT_ALLOWED);
}

// admit6 is admit4 for an inner IPv6 packet.
static __always_inline int admit6(struct __sk_buff *skb, const struct settings *cfg, const struct outer *o)
{
	__u32 off = ETH_HLEN + o->len;
	if (o->inner < IPV6_HLEN)
		return drop(DROP_TOO_SHORT);
	if (ensure_linear(skb, off + IPV6_HLEN))
		return pass(PASS_HELPER_ERROR);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + off;
	if ((void *)(ip + IPV6_HLEN) > data_end)
		return pass(PASS_HELPER_ERROR);
	if (is_ipv6_extension(ip[6]))
		return pass(PASS_IPV6_EXTENSION);
	__u32 tot = IPV6_HLEN + (((__u32)ip[4] << 8) | ip[5]);
	if (skb->gso_size && tot != o->inner)
		return pass(PASS_GSO);
	if (o->inner < tot)
		return drop(DROP_TOO_SHORT);
	if (tot != o->inner)
		return drop(DROP_BAD_HEADER);

	struct lpm6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, ip + 8, 16);
	__u32 *src = bpf_map_lookup_elem(&routes6, &k);
	if (!src && ip[6] == PROTO_ICMPV6 && icmp_error_type(skb, off + IPV6_HLEN, 1))
		return pass(PASS_ICMP_ERROR); // as in admit4
	if (!src || *src != o->sender)
		return drop(DROP_SRC_NOT_ALLOWED);
	__builtin_memcpy(k.addr, ip + 24, 16);
	if (bpf_map_lookup_elem(&local6, &k))
		return deliver(skb, cfg, o, ip, 1);
	if (cfg->relay) {
		__u32 *dst = bpf_map_lookup_elem(&routes6, &k);
		if (dst && *dst != o->sender)
			return relay(skb, cfg, o, *dst, 1);
	}
	return drop(DROP_DST_NOT_ALLOWED);
}

// admit checks the inner packet of a datagram from a known peer.
static __always_inline int admit(struct __sk_buff *skb, const struct settings *cfg, const struct outer *o)
{
	if (o->inner == 0)
		return pass(PASS_KEEPALIVE);
	__u8 ver;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + o->len, &ver, 1))
		return pass(PASS_HELPER_ERROR);
	switch (ver >> 4) {
	case 4:
		return admit4(skb, cfg, o);
	case 6:
		return admit6(skb, cfg, o);
	case 0: // a keepalive request or reply (dataplane/keepalive.go)
		return pass(PASS_KEEPALIVE);
	}
	return drop(DROP_NOT_IPV4);
}

// partial_checksum reports whether the UDP checksum field holds only the
// pseudo-header sum: the datagram comes with CHECKSUM_PARTIAL (a sender on
// a veth with tx checksum offload), whose checksum start points at this
// UDP header. Stripping the header would leave the kernel to "complete"
// a checksum inside the Ethernet header later, so such datagrams go to
// the socket, which copes. A finished checksum equals the seed by chance
// once in 65536 datagrams; those take the socket path too, correctly.
static __always_inline int partial_checksum(const __u8 *udp, __u64 pseudo)
{
	__u16 check = *(const __u16 *)(udp + 6);
	return check != 0 && check == (__u16)fold(pseudo);
}

// Results of outer_checksum_ok.
#define CSUM_BAD 0
#define CSUM_OK 1
#define CSUM_UNKNOWN 2

// outer_checksum_ok verifies the UDP checksum of a datagram: the UDP
// header at off, ulen bytes with the payload, pseudo the pseudo-header
// sum (addresses, length, protocol). A datagram the kernel validated
// already (the NIC's, or a veth's, receive checksum offload:
// CHECKSUM_UNNECESSARY) is OK as it is; any other is summed here, in
// chunks copied to the scratch map. The userspace path gets the same
// check from the kernel's UDP layer. CSUM_UNKNOWN: it could not be summed.
//
// A global (not inlined, not static) function: the verifier checks it
// once on its own, not once per call site and per state of the caller,
// which the loop would multiply past the verifier's instruction limit.
__attribute__((noinline)) int outer_checksum_ok(struct __sk_buff *skb, __u32 off, __u32 ulen, __u64 pseudo)
{
	if (!skb)
		return CSUM_UNKNOWN;
	if (bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) >= 0)
		return CSUM_OK;
	__u32 zero = 0;
	struct csum_scratch *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return CSUM_UNKNOWN;
	pseudo = (pseudo & 0xffffffff) + (pseudo >> 32);
	__s64 sum = (pseudo & 0xffffffff) + (pseudo >> 32);
	if (ulen == 0 || ulen > 0xffff)
		return CSUM_UNKNOWN;
	// Chunk i starts at i * CSUM_CHUNK: a constant per iteration, so that
	// the verifier's states differ by the iteration alone and the loop
	// costs it one pass per chunk.
	for (__u32 i = 0; i < 0x10000 / CSUM_CHUNK; i++) {
		__u32 start = i * CSUM_CHUNK;
		if (start >= ulen)
			break;
		__u32 n = ulen - start;
		if (n > CSUM_CHUNK)
			n = CSUM_CHUNK;
		__u32 words = (n + 3) & ~3U; // the last chunk padded with zeros
		asm volatile("" : "+r"(words)); // keep the check below for the verifier
		if (n == 0 || words > CSUM_CHUNK)
			return CSUM_UNKNOWN;
		*(__u32 *)&buf->b[(words - 4) & (CSUM_CHUNK - 4)] = 0;
		if (bpf_skb_load_bytes(skb, off + start, buf->b, n))
			return CSUM_UNKNOWN;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)buf->b, words, sum);
		if (sum < 0)
			return CSUM_UNKNOWN;
	}
	return fold(sum) == 0xffff ? CSUM_OK : CSUM_BAD;
}

// check_outer applies outer_checksum_ok to a datagram that carries a
// checksum. It returns 0 to go on, or -1 with *verdict set.
static __always_inline int check_outer(struct __sk_buff *skb, __u32 off, __u32 ulen, __u64 pseudo, int *verdict)
{
	if (skb->gso_size) {
		// Several datagrams: one checksum does not cover them.
		*verdict = pass(PASS_CHECKSUM);
		return -1;
	}
	switch (outer_checksum_ok(skb, off, ulen, pseudo)) {
	case CSUM_OK:
		return 0;
	case CSUM_BAD:
		*verdict = drop(DROP_BAD_CHECKSUM);
		return -1;
	}
	*verdict = pass(PASS_CHECKSUM);
	return -1;
}

// outer4 parses an outer IPv4 + UDP header. It returns -1 with *verdict
// set when the frame is not a tunnel datagram the program handles.
static __always_inline int outer4(struct __sk_buff *skb, const struct settings *cfg, struct outer *o,
				  struct endpoint_key *ek, int *verdict)
{
	*verdict = TC_ACT_OK;
	if (ensure_linear(skb, ETH_HLEN + OUTER4_LEN))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	if ((void *)(ip + OUTER4_LEN) > data_end || ip[9] != PROTO_UDP)
		return -1;
	if (cfg->listen_family == 4 && !same_words(ip + 16, cfg->listen_addr, 1))
		return -1;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	int frag = (ip[6] & 0x3f) | ip[7];
	if (ihl != IPV4_HLEN || frag) {
		// Ours only if the UDP header says so; the stack sorts it out.
		__be16 dport = 0;
		if ((ip[6] & 0x1f) | ip[7] || ihl < IPV4_HLEN ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + ihl + 2, &dport, 2) || dport != cfg->listen_port)
			return -1;
		*verdict = pass(PASS_OUTER_HEADER);
		return -1;
	}
	__u8 *udp = ip + IPV4_HLEN;
	if (*(__be16 *)(udp + 2) != cfg->listen_port)
		return -1;
	if (!ipv4_header_ok(ip))
		return -1; // the stack drops it
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	__u32 ulen = ((__u32)udp[4] << 8) | udp[5];
	if (ulen < UDP_HLEN || ulen != tot - IPV4_HLEN || tot > skb->len - ETH_HLEN) {
		*verdict = pass(PASS_OUTER_HEADER);
		return -1;
	}
	__u64 pseudo = sum32(ip + 12, 2) + bpf_htons(ulen) + bpf_htons(PROTO_UDP);
	if (partial_checksum(udp, pseudo)) {
		*verdict = pass(PASS_CHECKSUM);
		return -1;
	}
	__u16 check = *(const __u16 *)(udp + 6);
	o->len = OUTER4_LEN;
	o->inner = ulen - UDP_HLEN;
	o->v6 = 0;
	ek->family = 4;
	__builtin_memcpy(ek->addr, ip + 12, 4);
	ek->port = *(__be16 *)udp;
	// IPv4: a zero checksum is none (what the programs send).
	if (check && check_outer(skb, ETH_HLEN + IPV4_HLEN, ulen, pseudo, verdict))
		return -1;
	return 0;
}

// outer6 is outer4 for an outer IPv6 header (UDP right after it).
static __always_inline int outer6(struct __sk_buff *skb, const struct settings *cfg, struct outer *o,
				  struct endpoint_key *ek, int *verdict)
{
	*verdict = TC_ACT_OK;
	if (ensure_linear(skb, ETH_HLEN + OUTER6_LEN))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	if ((void *)(ip + OUTER6_LEN) > data_end || ip[6] != PROTO_UDP)
		return -1;
	if (cfg->listen_family == 6 && !same_words(ip + 24, cfg->listen_addr, 4))
		return -1;
	__u8 *udp = ip + IPV6_HLEN;
	if (*(__be16 *)(udp + 2) != cfg->listen_port)
		return -1;
	__u32 plen = ((__u32)ip[4] << 8) | ip[5];
	__u32 ulen = ((__u32)udp[4] << 8) | udp[5];
	if (ulen < UDP_HLEN || ulen != plen || plen > skb->len - ETH_HLEN - IPV6_HLEN) {
		*verdict = pass(PASS_OUTER_HEADER);
		return -1;
	}
	__u64 pseudo = sum32(ip + 8, 8) + bpf_htonl(ulen) + bpf_htons(PROTO_UDP);
	if (partial_checksum(udp, pseudo)) {
		*verdict = pass(PASS_CHECKSUM);
		return -1;
	}
	__u16 check = *(const __u16 *)(udp + 6);
	o->len = OUTER6_LEN;
	o->inner = ulen - UDP_HLEN;
	o->v6 = 1;
	ek->family = 6;
	__builtin_memcpy(ek->addr, ip + 8, 16);
	ek->port = *(__be16 *)udp;
	if (!check) { // mandatory over IPv6: the kernel drops such a datagram too
		*verdict = drop(DROP_BAD_CHECKSUM);
		return -1;
	}
	if (check_outer(skb, ETH_HLEN + IPV6_HLEN, ulen, pseudo, verdict))
		return -1;
	return 0;
}

SEC("tc")
int wan_ingress(struct __sk_buff *skb)
{
	if (skb->pkt_type != PACKET_HOST || skb->vlan_present)
		return TC_ACT_OK;
	const struct settings *cfg = get_settings();
	if (!cfg || !cfg->listen_port)
		return TC_ACT_OK;
	struct outer o = {};
	struct endpoint_key ek = {};
	int verdict = TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (outer4(skb, cfg, &o, &ek, &verdict))
			return verdict;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (outer6(skb, cfg, &o, &ek, &verdict))
			return verdict;
	} else {
		return TC_ACT_OK;
	}
	__u32 *id = bpf_map_lookup_elem(&endpoints, &ek);
	if (!id)
		return pass(PASS_UNKNOWN_SENDER); // learning, or not_from_peer
	o.sender = *id;
	return admit(skb, cfg, &o);
}
