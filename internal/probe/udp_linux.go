package probe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// UDPOptions configure UDPBurstWith. Zero values take the defaults.
type UDPOptions struct {
	Count int // datagrams to send; 0 = 1
	// Payload is the UDP payload size in bytes (at least 16: run id and
	// sequence number); 0 = 64.
	Payload int
	Rate    int // datagrams per second; 0 = as fast as possible
	// Timeout bounds the whole burst, sending included; 0 = 10s.
	Timeout time.Duration
	// Drain is how long the receiver keeps waiting once the sender is
	// done and nothing arrives; 0 = 500ms.
	Drain time.Duration
	// Src, if valid, is the sender's local address; its port may be 0.
	// Use it to send from a fixed port (e.g. to watch a NAT mapping).
	Src netip.AddrPort
	// GSO, when above 1, sends GSO datagrams per write as one UDP GSO
	// super-datagram (UDP_SEGMENT of Payload bytes), as QUIC stacks do;
	// at most 64, and GSO*Payload at most 65000.
	GSO int
}

// UDPResult is what a UDP burst measured.
type UDPResult struct {
	Sent       int // datagrams the kernel accepted
	SendErrors int // failed sends (e.g. ECONNREFUSED after an ICMP port unreachable)
	SendError  error
	Received   int // distinct sequence numbers received intact
	Duplicates int // datagrams of an already received sequence number
	Reordered  int // datagrams arriving after one with a higher sequence number
	Corrupted  int // datagrams of this burst with a wrong length or payload
	// Sources are the distinct source addresses the receiver saw (after
	// any NAT), in order of appearance.
	Sources  []netip.AddrPort
	Local    netip.AddrPort // the sender's local address
	Duration time.Duration  // time spent sending
}

// Loss returns the fraction of sent datagrams not received.
func (r UDPResult) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// UDPBurst sends count datagrams of payload bytes from inside srcNS to dst
// at rate datagrams per second (0 = unlimited); a receiver on dst's port
// (all addresses; port 0 = any free port) inside dstNS counts them. See
// UDPBurstWith.
func UDPBurst(srcNS, dstNS netns.NsHandle, dst netip.AddrPort, count, payload int, rate int, timeout time.Duration) (UDPResult, error) {
	return UDPBurstWith(srcNS, dstNS, dst, UDPOptions{Count: count, Payload: payload, Rate: rate, Timeout: timeout})
}

const udpHeader = 16 // run id (8) + sequence number (8)

// UDPBurstWith runs a sequenced UDP burst. The error reports only what
// kept the burst from running; loss is in the result.
func UDPBurstWith(srcNS, dstNS netns.NsHandle, dst netip.AddrPort, o UDPOptions) (UDPResult, error) {
	var res UDPResult
	if o.Count == 0 {
		o.Count = 1
	}
	if o.Payload == 0 {
		o.Payload = 64
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Drain == 0 {
		o.Drain = 500 * time.Millisecond
	}
	switch {
	case !dst.Addr().IsValid():
		return res, fmt.Errorf("udp burst: invalid destination %s", dst)
	case o.Count < 0 || o.Payload < udpHeader || o.Payload > 65507 || o.Rate < 0 || o.Timeout < 0 || o.Drain < 0:
		return res, fmt.Errorf("udp burst to %s: bad options (count %d, payload %d (16..65507), rate %d)", dst, o.Count, o.Payload, o.Rate)
	case o.GSO < 0 || o.GSO > 64 || o.GSO*o.Payload > 65000:
		return res, fmt.Errorf("udp burst to %s: bad options (gso %d of %d bytes)", dst, o.GSO, o.Payload)
	}
	o.GSO = max(o.GSO, 1)
	deadline := time.Now().Add(o.Timeout)
	network := "udp4"
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		network = "udp6"
	}

	var rc *net.UDPConn
	err := nsutil.Do(dstNS, func() error {
		c, err := net.ListenPacket(network, net.JoinHostPort("", strconv.Itoa(int(dst.Port()))))
		if err != nil {
			return err
		}
		rc = c.(*net.UDPConn)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("udp burst to %s: listen: %w", dst, err)
	}
	defer rc.Close()
	_ = rc.SetReadBuffer(8 << 20)
	target := netip.AddrPortFrom(dst.Addr(), uint16(rc.LocalAddr().(*net.UDPAddr).Port))

	var sc *net.UDPConn
	err = nsutil.Do(srcNS, func() error {
		var laddr *net.UDPAddr
		if o.Src.IsValid() {
			laddr = net.UDPAddrFromAddrPort(o.Src)
		}
		c, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(target))
		if err != nil {
			return err
		}
		sc = c
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("udp burst to %s: open sender: %w", target, err)
	}
	defer sc.Close()
	res.Local = sc.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = sc.SetWriteBuffer(4 << 20)
	_ = sc.SetWriteDeadline(deadline)
	if o.GSO > 1 {
		if err := setUDPSegment(sc, o.Payload); err != nil {
			return res, fmt.Errorf("udp burst to %s: %w", target, err)
		}
	}

	var runID [8]byte
	_, _ = rand.Read(runID[:])
	r := &udpReceiver{conn: rc, runID: runID, payload: o.Payload, seen: make([]bool, o.Count)}
	var sendDone atomic.Int64 // unix nanos when sending ended; 0 while sending
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		r.run(deadline, o.Drain, &sendDone)
	}()

	buf := make([]byte, o.GSO*o.Payload)
	start := time.Now()
	for seq := 0; seq < o.Count; seq += o.GSO {
		if o.Rate > 0 {
			next := start.Add(time.Duration(int64(seq) * int64(time.Second) / int64(o.Rate)))
			if d := time.Until(next); d > 0 {
				if time.Now().Add(d).After(deadline) {
					break
				}
				time.Sleep(d)
			}
		}
		if !time.Now().Before(deadline) {
			break
		}
		k := min(o.GSO, o.Count-seq) // datagrams in this write
		for i := range k {
			d := buf[i*o.Payload : (i+1)*o.Payload]
			copy(d, runID[:])
			fillUDP(d, uint64(seq+i))
		}
		if _, err := sc.Write(buf[:k*o.Payload]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			res.SendErrors += k
			res.SendError = err
			continue
		}
		res.Sent += k
	}
	res.Duration = time.Since(start)
	sendDone.Store(time.Now().UnixNano())
	<-recvDone

	res.Received, res.Duplicates, res.Reordered, res.Corrupted = r.received, r.dups, r.reordered, r.corrupt
	res.Sources = r.sources
	return res, nil
}

// setUDPSegment makes every write on c a UDP GSO super-datagram cut into
// datagrams of size bytes (UDP_SEGMENT).
func setUDPSegment(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt UDP_SEGMENT", serr)
	}
	return nil
}

// fillUDP writes the sequence number and the payload pattern that
// depends on it (the run id is already in place).
func fillUDP(b []byte, seq uint64) {
	binary.BigEndian.PutUint64(b[8:16], seq)
	for i := udpHeader; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)
	}
}

type udpReceiver struct {
	conn    *net.UDPConn
	runID   [8]byte
	payload int
	seen    []bool

	received, dups, reordered, corrupt int
	maxSeq                             int64
	sources                            []netip.AddrPort
}

// run reads until every datagram arrived, the deadline, or Drain of
// silence after the sender is done.
func (r *udpReceiver) run(deadline time.Time, drain time.Duration, sendDone *atomic.Int64) {
	buf := make([]byte, 65536)
	r.maxSeq = -1
	last := time.Now()
	for r.received < len(r.seen) {
		now := time.Now()
		if !now.Before(deadline) {
			return
		}
		if sd := sendDone.Load(); sd != 0 {
			quiet := last
			if t := time.Unix(0, sd); t.After(quiet) {
				quiet = t
			}
			if now.Sub(quiet) >= drain {
				return
			}
		}
		// Short reads so that the end of sending is noticed promptly.
		_ = r.conn.SetReadDeadline(minTime(deadline, now.Add(50*time.Millisecond)))
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return
		}
		last = time.Now()
		r.handle(buf[:n], from)
	}
}

func (r *udpReceiver) handle(b []byte, from netip.AddrPort) {
	if len(b) < udpHeader || [8]byte(b[:8]) != r.runID {
		return // not ours
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if !slices.Contains(r.sources, from) {
		r.sources = append(r.sources, from)
	}
	seq := binary.BigEndian.Uint64(b[8:16])
	if len(b) != r.payload || seq >= uint64(len(r.seen)) {
		r.corrupt++
		return
	}
	for i := udpHeader; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i) {
			r.corrupt++
			return
		}
	}
	if r.seen[seq] {
		r.dups++
		return
	}
	r.seen[seq] = true
	r.received++
	if int64(seq) < r.maxSeq {
		r.reordered++
	} else {
		r.maxSeq = int64(seq)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
