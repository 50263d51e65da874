package probe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

const ipv6HeaderLen = 40

// ICMPv6 types Ping6 recognises.
const (
	icmpv6PacketTooBig = 2
	icmpv6EchoRequest  = 128
	icmpv6EchoReply    = 129
)

// Ping6 is Ping for IPv6: count ICMPv6 echo requests of size bytes (the
// IPv6 packet: 40 + 8 + data; 0 = 104) to dst from inside namespace ns,
// interval apart, then up to timeout for the replies. ICMPv6 errors about
// the requests are in Errors (a packet too big has Type 2 and its MTU).
// Requests are sent without fragmentation (IPV6_PMTUDISC_DO): one larger
// than the known path MTU fails locally and counts in TooBig.
func Ping6(ns netns.NsHandle, dst netip.Addr, count int, interval, timeout time.Duration, size int) (PingResult, error) {
	var res PingResult
	if size == 0 {
		size = ipv6HeaderLen + icmpHeaderLen + 56
	}
	switch {
	case !dst.Is6() || dst.Is4In6():
		return res, fmt.Errorf("ping6 %s: not an IPv6 address", dst)
	case count < 1 || count > 65536 || interval < 0 || timeout < 0:
		return res, fmt.Errorf("ping6 %s: count %d, interval %v or timeout %v out of range", dst, count, interval, timeout)
	case size < ipv6HeaderLen+icmpHeaderLen || size > 65535:
		return res, fmt.Errorf("ping6 %s: size %d out of range (48..65535)", dst, size)
	}
	conn, err := openRawICMP(ns, "ip6:ipv6-icmp", "::", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
	if err != nil {
		return res, fmt.Errorf("ping6 %s: open raw ICMPv6 socket: %w", dst, err)
	}
	defer conn.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	p := &pinger6{conn: conn, dst: dst, id: int(binary.BigEndian.Uint16(idb[:])),
		data: pingPayload(size - ipv6HeaderLen - icmpHeaderLen), sent: make([]time.Time, count), seen: make([]bool, count)}
	_ = conn.SetReadDeadline(time.Now().Add(time.Duration(count-1)*interval + timeout))
	done := make(chan struct{})
	go func() { defer close(done); p.receive(&res) }()
	for seq := range count {
		if seq > 0 {
			time.Sleep(interval)
		}
		p.send(seq, &res)
	}
	<-done
	res.Min, res.Avg, res.Max, res.P99 = summarize(res.RTTs)
	res.PathMTU = pathMTU(ns, dst)
	return res, nil
}

// pinger6 is one Ping6 run; mu guards sent, seen and the result, which the
// sender and the receiver goroutine share.
type pinger6 struct {
	conn *net.IPConn
	dst  netip.Addr
	id   int
	data []byte
	mu   sync.Mutex
	sent []time.Time
	seen []bool
}

func (p *pinger6) send(seq int, res *PingResult) {
	msg := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: p.data}}
	b, _ := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	p.mu.Lock()
	p.sent[seq] = time.Now()
	p.mu.Unlock()
	_, err := p.conn.WriteTo(b, &net.IPAddr{IP: p.dst.AsSlice()})
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil:
		res.Sent++
	case errors.Is(err, unix.EMSGSIZE):
		res.TooBig++
	default:
		res.SendErrors++
		res.SendError = err
	}
}

// receive reads until the deadline or until every request is answered.
func (p *pinger6) receive(res *PingResult) {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		p.mu.Lock()
		p.handle(buf[:n], src, time.Now(), res)
		all := res.Received == len(p.sent)
		p.mu.Unlock()
		if all {
			return
		}
	}
}

func (p *pinger6) handle(b []byte, src netip.Addr, now time.Time, res *PingResult) {
	if len(b) < icmpHeaderLen {
		return
	}
	switch {
	case b[0] == icmpv6EchoReply && src == p.dst:
		id, seq := int(binary.BigEndian.Uint16(b[4:])), int(binary.BigEndian.Uint16(b[6:]))
		if id != p.id || seq >= len(p.sent) || p.sent[seq].IsZero() {
			return
		}
		switch {
		case string(b[icmpHeaderLen:]) != string(p.data):
			res.Corrupted++
		case p.seen[seq]:
			res.Duplicates++
		default:
			p.seen[seq] = true
			res.Received++
			res.RTTs = append(res.RTTs, now.Sub(p.sent[seq]))
		}
	case b[0] < 128: // an error quoting our request
		orig := b[icmpHeaderLen:]
		if len(orig) < ipv6HeaderLen+icmpHeaderLen || orig[6] != 58 {
			return
		}
		odst, _ := netip.AddrFromSlice(orig[24:40])
		inner := orig[ipv6HeaderLen:]
		if odst != p.dst || inner[0] != icmpv6EchoRequest || int(binary.BigEndian.Uint16(inner[4:])) != p.id {
			return
		}
		e := ICMPError{From: src, Type: int(b[0]), Code: int(b[1]), Seq: int(binary.BigEndian.Uint16(inner[6:]))}
		if b[0] == icmpv6PacketTooBig {
			e.MTU = int(binary.BigEndian.Uint32(b[4:]))
		}
		res.Errors = append(res.Errors, e)
	}
}
