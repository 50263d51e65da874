// Package probe runs traffic checks between network namespaces: ICMP echo
// (with DF and "fragmentation needed" reporting), a TCP transfer checked
// with SHA-256 at both ends, and a sequenced UDP burst. Every check opens
// its sockets inside the namespaces through internal/nsutil (the calling
// goroutine's namespace never changes), is bounded in time, and closes
// everything it opened before it returns. Nothing is printed.
package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// PingOptions configure PingWith. Zero values take the defaults.
type PingOptions struct {
	Count    int           // echo requests to send; 0 = 1
	Interval time.Duration // between two requests; 0 = 100ms
	// Timeout is how long to wait for replies after the last request; 0
	// = 1s. The whole ping takes at most (Count-1)*Interval + Timeout.
	Timeout time.Duration
	// Size is the size of each request as an IPv4 packet: 20 bytes of IP
	// header + 8 of ICMP header + payload; 0 = 84 (ping's default 56
	// bytes of data). At least 28.
	Size int
	// DF sets Don't Fragment (IP_MTU_DISCOVER=IP_PMTUDISC_DO): a request
	// larger than the known path MTU fails locally with EMSGSIZE (counted
	// in TooBig) and routers answer "fragmentation needed". Without DF
	// (IP_PMTUDISC_DONT) large requests are fragmented.
	DF bool
	// Src, if valid, is the source address (it must be local in the
	// namespace).
	Src netip.Addr
}

// ICMPError is an ICMP error received about one of the echo requests.
type ICMPError struct {
	From netip.Addr // the router or host that sent it
	Type int        // 3 destination unreachable, 11 time exceeded, ...
	Code int        // for type 3: 4 = fragmentation needed, 1 = host unreachable, ...
	MTU  int        // next-hop MTU of a "fragmentation needed" (type 3 code 4)
	Seq  int        // sequence number of the request it is about
}

// FragNeeded reports whether this is a "fragmentation needed" error.
func (e ICMPError) FragNeeded() bool { return e.Type == 3 && e.Code == 4 }

func (e ICMPError) String() string {
	if e.FragNeeded() {
		return fmt.Sprintf("fragmentation needed (mtu %d) from %s", e.MTU, e.From)
	}
	return fmt.Sprintf("icmp type %d code %d from %s", e.Type, e.Code, e.From)
}

// PingResult is what a ping measured.
type PingResult struct {
	Sent       int // requests the kernel accepted
	Received   int // distinct requests answered
	Duplicates int // extra replies to already answered requests
	Corrupted  int // replies with a bad checksum or payload (not counted in Received)
	TooBig     int // requests refused locally with EMSGSIZE (DF larger than the path MTU)
	SendErrors int // other send failures
	SendError  error
	// RTTs of the answered requests, in sequence order; Min/Avg/Max/P99
	// summarise them (0 without replies; P99 is the nearest-rank 99th
	// percentile).
	RTTs               []time.Duration
	Min, Avg, Max, P99 time.Duration
	// Errors are the ICMP errors received about the requests.
	Errors []ICMPError
	// PathMTU is the sender's view of the path MTU to the destination
	// after the ping (a cached PMTU from "fragmentation needed", or the
	// outgoing link's MTU); 0 if unknown.
	PathMTU int
}

// Loss returns the fraction of sent requests without reply.
func (r PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// FragNeeded returns the smallest next-hop MTU of the "fragmentation
// needed" errors received, and whether there was any.
func (r PingResult) FragNeeded() (mtu int, ok bool) {
	for _, e := range r.Errors {
		if e.FragNeeded() && (!ok || e.MTU < mtu) {
			mtu, ok = e.MTU, true
		}
	}
	return mtu, ok
}

// Ping sends count ICMP echo requests of size bytes (IP packet size; 0 =
// 84) to dst from inside namespace ns, interval apart, and waits up to
// timeout after the last one for the replies. See PingWith.
func Ping(ns netns.NsHandle, dst netip.Addr, count int, interval, timeout time.Duration, size int) (PingResult, error) {
	return PingWith(ns, dst, PingOptions{Count: count, Interval: interval, Timeout: timeout, Size: size})
}

const (
	ipv4HeaderLen = 20
	icmpHeaderLen = 8
)

// PingWith pings dst from inside namespace ns through a raw ICMP socket
// opened there. The error reports only what kept the ping from running
// (bad options, no socket); loss, ICMP errors and local EMSGSIZE are in
// the result.
func PingWith(ns netns.NsHandle, dst netip.Addr, o PingOptions) (PingResult, error) {
	var res PingResult
	if !dst.Is4() {
		return res, fmt.Errorf("ping %s: only IPv4 is supported", dst)
	}
	if o.Count == 0 {
		o.Count = 1
	}
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.Size == 0 {
		o.Size = 84
	}
	switch {
	case o.Count < 0 || o.Count > 65536:
		return res, fmt.Errorf("ping %s: count %d out of range (1..65536)", dst, o.Count)
	case o.Interval < 0 || o.Timeout < 0:
		return res, fmt.Errorf("ping %s: negative interval or timeout", dst)
	case o.Size < ipv4HeaderLen+icmpHeaderLen || o.Size > 65535:
		return res, fmt.Errorf("ping %s: size %d out of range (28..65535)", dst, o.Size)
	}
	pmtu := unix.IP_PMTUDISC_DONT
	if o.DF {
		pmtu = unix.IP_PMTUDISC_DO
	}
	laddr := "0.0.0.0"
	if o.Src.IsValid() {
		laddr = o.Src.String()
	}
	conn, err := openRawICMP(ns, "ip4:icmp", laddr, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu)
	if err != nil {
		return res, fmt.Errorf("ping %s: open raw ICMP socket: %w", dst, err)
	}
	defer conn.Close()

	var idb [2]byte
	_, _ = rand.Read(idb[:])
	p := &pinger{
		conn:  conn,
		dst:   dst,
		id:    int(binary.BigEndian.Uint16(idb[:])),
		data:  pingPayload(o.Size - ipv4HeaderLen - icmpHeaderLen),
		sent:  make([]time.Time, o.Count),
		rtt:   make([]time.Duration, o.Count),
		seen:  make([]bool, o.Count),
		count: o.Count,
		done:  make(chan struct{}),
	}
	start := time.Now()
	// Bound the receiver from the start; tightened after the last send.
	_ = conn.SetReadDeadline(start.Add(time.Duration(o.Count-1)*o.Interval + o.Timeout))
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		p.receive()
	}()
	dstAddr := &net.IPAddr{IP: dst.AsSlice()}
	for seq := 0; seq < o.Count; seq++ {
		if seq > 0 {
			next := start.Add(time.Duration(seq) * o.Interval)
			select {
			case <-p.done:
			case <-time.After(time.Until(next)):
			}
		}
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: p.data}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return res, fmt.Errorf("ping %s: marshal: %w", dst, err)
		}
		p.mu.Lock()
		p.sent[seq] = time.Now()
		p.mu.Unlock()
		_, err = conn.WriteTo(b, dstAddr)
		switch {
		case err == nil:
			res.Sent++
		case errors.Is(err, unix.EMSGSIZE):
			res.TooBig++
		default:
			res.SendErrors++
			res.SendError = err
		}
		if err != nil {
			p.mu.Lock()
			p.sent[seq] = time.Time{}
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	p.expected = res.Sent
	allIn := p.received >= p.expected
	p.mu.Unlock()
	if allIn {
		_ = conn.SetReadDeadline(time.Now())
	} else {
		_ = conn.SetReadDeadline(time.Now().Add(o.Timeout))
	}
	<-recvDone

	p.mu.Lock()
	defer p.mu.Unlock()
	res.Received = p.received
	res.Duplicates = p.dups
	res.Corrupted = p.corrupt
	res.Errors = p.errs
	for seq, ok := range p.seen {
		if ok {
			res.RTTs = append(res.RTTs, p.rtt[seq])
		}
	}
	res.Min, res.Avg, res.Max, res.P99 = summarize(res.RTTs)
	res.PathMTU = pathMTU(ns, dst)
	return res, nil
}

type pinger struct {
	conn  *net.IPConn
	dst   netip.Addr
	id    int
	data  []byte
	count int
	done  chan struct{} // closed when every sent request is answered

	mu       sync.Mutex
	sent     []time.Time // zero: not (successfully) sent
	rtt      []time.Duration
	seen     []bool
	received int
	expected int // Sent, once sending is over; 0 before
	dups     int
	corrupt  int
	errs     []ICMPError
	closed   bool
}

// receive reads ICMP messages until the read deadline.
func (p *pinger) receive() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return // deadline (or closed)
		}
		now := time.Now()
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		src = src.Unmap()
		p.handle(buf[:n], src, now)
		p.mu.Lock()
		finished := p.expected > 0 && p.received >= p.expected
		p.mu.Unlock()
		if finished {
			return
		}
	}
}

func (p *pinger) handle(b []byte, src netip.Addr, now time.Time) {
	if len(b) < icmpHeaderLen {
		return
	}
	switch b[0] {
	case 0: // echo reply
		if src != p.dst {
			return
		}
		m, err := icmp.ParseMessage(1, b)
		if err != nil {
			return
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != p.id || echo.Seq < 0 || echo.Seq >= p.count {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		seq := echo.Seq
		switch {
		case p.sent[seq].IsZero():
			return
		case checksum(b) != 0 || string(echo.Data) != string(p.data):
			p.corrupt++
		case p.seen[seq]:
			p.dups++
		default:
			p.seen[seq] = true
			p.rtt[seq] = now.Sub(p.sent[seq])
			p.received++
			if p.received == p.count && !p.closed {
				p.closed = true
				close(p.done)
			}
		}
	case 3, 4, 5, 11, 12: // errors quoting the original datagram
		orig := b[icmpHeaderLen:]
		if len(orig) < ipv4HeaderLen || orig[0]>>4 != 4 {
			return
		}
		ihl := int(orig[0]&0x0f) * 4
		if ihl < ipv4HeaderLen || len(orig) < ihl+icmpHeaderLen || orig[9] != 1 {
			return
		}
		odst, _ := netip.AddrFromSlice(orig[16:20])
		inner := orig[ihl:]
		if odst != p.dst || inner[0] != 8 || int(binary.BigEndian.Uint16(inner[4:6])) != p.id {
			return
		}
		e := ICMPError{From: src, Type: int(b[0]), Code: int(b[1]), Seq: int(binary.BigEndian.Uint16(inner[6:8]))}
		if e.FragNeeded() {
			e.MTU = int(binary.BigEndian.Uint16(b[6:8]))
		}
		p.mu.Lock()
		p.errs = append(p.errs, e)
		p.mu.Unlock()
	}
}

// pingPayload returns n bytes of a recognisable pattern.
func pingPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 0x20)
	}
	return b
}

// checksum is the Internet checksum of b (0 over a message with a valid
// checksum field).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// summarize returns min, mean, max and the nearest-rank 99th percentile.
func summarize(d []time.Duration) (lo, avg, hi, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	rank := (99*len(s) + 99) / 100 // ceil(0.99*n)
	return s[0], sum / time.Duration(len(s)), s[len(s)-1], s[rank-1]
}

// pathMTU asks the routing table of namespace ns for the route to dst and
// returns its cached path MTU, or the outgoing link's MTU; 0 on failure.
func pathMTU(ns netns.NsHandle, dst netip.Addr) int {
	mtu := 0
	_ = nsutil.Do(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		routes, err := h.RouteGet(dst.AsSlice())
		if err != nil || len(routes) == 0 {
			return err
		}
		if routes[0].MTU > 0 {
			mtu = routes[0].MTU
			return nil
		}
		l, err := h.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return err
		}
		mtu = l.Attrs().MTU
		return nil
	})
	return mtu
}

// openRawICMP opens a raw ICMP socket (network "ip4:icmp" or
// "ip6:ipv6-icmp") bound to laddr inside namespace ns, with the socket
// option level/opt set to val before it is used (the path-MTU discovery
// mode, which decides DF).
func openRawICMP(ns netns.NsHandle, network, laddr string, level, opt, val int) (*net.IPConn, error) {
	var conn *net.IPConn
	err := nsutil.Do(ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, val) }); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), network, laddr)
		if err != nil {
			return err
		}
		conn = pc.(*net.IPConn)
		return nil
	})
	return conn, err
}
