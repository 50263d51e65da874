package probe

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	mrand "math/rand/v2"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/nsutil"
)

// TransferResult is what a TCP transfer measured.
type TransferResult struct {
	Sent     int64         // bytes the sender wrote
	Bytes    int64         // bytes the receiver read before EOF
	Duration time.Duration // from the established connection to the receiver's EOF
	// Throughput is Bytes*8/Duration in bits per second.
	Throughput     float64
	SentSHA256     [32]byte
	ReceivedSHA256 [32]byte
	// Peer is the sender's address as the receiver saw it (after any
	// NAT); Local is the sender's own address.
	Peer, Local netip.AddrPort
}

// OK reports whether every byte arrived intact.
func (r TransferResult) OK() bool {
	return r.Bytes == r.Sent && r.SentSHA256 == r.ReceivedSHA256
}

// TransferOptions are TCPTransferWith's.
type TransferOptions struct {
	// Bytes is how many bytes to send; with Stop, the most to send (0:
	// no limit but Timeout).
	Bytes int64
	// Timeout bounds the whole transfer, connection included.
	Timeout time.Duration
	// Progress, if not nil, is kept up to date while the transfer runs,
	// for a caller that watches it.
	Progress *TransferProgress
	// Stop, if not nil, ends the sending when it is closed: the transfer
	// then completes with the bytes sent until then, checked as usual.
	// A caller uses it to keep a transfer running for as long as some
	// operation takes, whatever the speed of the path.
	Stop <-chan struct{}
}

// TransferProgress is how far a running transfer got.
type TransferProgress struct {
	// Sent is the number of bytes the sender's writes have handed to its
	// socket; a write is at most SendChunk bytes. Bytes beyond
	// Sent+SendChunk when it is read were not in the sender's kernel yet.
	Sent atomic.Int64
	// Received is the number of bytes the receiver has read.
	Received atomic.Int64
}

// SendChunk is the most a transfer's sender writes at once.
const SendChunk = 256 << 10

// TCPTransfer listens on dst's port (all addresses; port 0 = any free
// port) inside dstNS, connects to dst from inside srcNS, sends n bytes of
// pseudo-random data, and compares the SHA-256 computed by the sender
// with the receiver's. Everything ends within timeout. The error is
// non-nil when the transfer did not complete or the data differ; the
// result is filled as far as it got.
func TCPTransfer(srcNS, dstNS netns.NsHandle, dst netip.AddrPort, n int64, timeout time.Duration) (TransferResult, error) {
	return TCPTransferWith(srcNS, dstNS, dst, TransferOptions{Bytes: n, Timeout: timeout})
}

// TCPTransferWith is TCPTransfer with the options o.
func TCPTransferWith(srcNS, dstNS netns.NsHandle, dst netip.AddrPort, o TransferOptions) (TransferResult, error) {
	var res TransferResult
	n, timeout := o.Bytes, o.Timeout
	if !dst.Addr().IsValid() || n < 0 || timeout <= 0 {
		return res, fmt.Errorf("tcp transfer to %s: bad arguments (n %d, timeout %v)", dst, n, timeout)
	}
	if n == 0 && o.Stop != nil {
		n = math.MaxInt64
	}
	deadline := time.Now().Add(timeout)
	network := "tcp4"
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		network = "tcp6"
	}
	var ln *net.TCPListener
	err := nsutil.Do(dstNS, func() error {
		l, err := net.Listen(network, net.JoinHostPort("", strconv.Itoa(int(dst.Port()))))
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("tcp transfer to %s: listen: %w", dst, err)
	}
	defer ln.Close()
	_ = ln.SetDeadline(deadline)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	target := netip.AddrPortFrom(dst.Addr(), port)

	type recvResult struct {
		bytes int64
		sum   [32]byte
		peer  netip.AddrPort
		end   time.Time
		err   error
	}
	recvc := make(chan recvResult, 1)
	go func() {
		var r recvResult
		c, err := ln.AcceptTCP()
		if err != nil {
			r.err = fmt.Errorf("accept: %w", err)
			recvc <- r
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		r.peer = c.RemoteAddr().(*net.TCPAddr).AddrPort()
		h := sha256.New()
		var w io.Writer = h
		if o.Progress != nil {
			w = counter{h, &o.Progress.Received}
		}
		r.bytes, err = io.CopyBuffer(w, c, make([]byte, 256<<10))
		r.end = time.Now()
		copy(r.sum[:], h.Sum(nil))
		if err != nil {
			r.err = fmt.Errorf("receive: %w", err)
		}
		recvc <- r
	}()

	var conn *net.TCPConn
	err = nsutil.Do(srcNS, func() error {
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial(network, target.String())
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	})
	if err != nil {
		ln.Close() // ends the accept
		<-recvc
		return res, fmt.Errorf("tcp transfer to %s: connect: %w", target, err)
	}
	defer conn.Close()
	start := time.Now()
	res.Local = conn.LocalAddr().(*net.TCPAddr).AddrPort()
	_ = conn.SetDeadline(deadline)

	var seed [32]byte
	_, _ = rand.Read(seed[:])
	src := mrand.NewChaCha8(seed)
	h := sha256.New()
	buf := make([]byte, SendChunk)
	var sendErr error
	for res.Sent < n && !closed(o.Stop) {
		chunk := buf[:min(int64(len(buf)), n-res.Sent)]
		_, _ = src.Read(chunk)
		h.Write(chunk)
		w, err := conn.Write(chunk)
		res.Sent += int64(w)
		if o.Progress != nil {
			o.Progress.Sent.Store(res.Sent)
		}
		if err != nil {
			sendErr = fmt.Errorf("send: %w", err)
			break
		}
	}
	copy(res.SentSHA256[:], h.Sum(nil))
	if sendErr == nil {
		if err := conn.CloseWrite(); err != nil {
			sendErr = fmt.Errorf("close write: %w", err)
		}
	} else {
		conn.Close() // unblocks the receiver with an error or EOF
	}
	r := <-recvc
	res.Bytes, res.ReceivedSHA256, res.Peer = r.bytes, r.sum, r.peer
	if !r.end.IsZero() {
		res.Duration = r.end.Sub(start)
		if res.Duration > 0 {
			res.Throughput = float64(res.Bytes) * 8 / res.Duration.Seconds()
		}
	}
	if err := errors.Join(sendErr, r.err); err != nil {
		return res, fmt.Errorf("tcp transfer to %s (received %d of the %d bytes sent): %w", target, res.Bytes, res.Sent, err)
	}
	if !res.OK() {
		return res, fmt.Errorf("tcp transfer to %s: data differ (sent %d bytes sha256 %x, received %d bytes sha256 %x)",
			target, res.Sent, res.SentSHA256[:8], res.Bytes, res.ReceivedSHA256[:8])
	}
	return res, nil
}

// counter is a Writer that adds what it writes to n.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}

// closed reports whether c is closed; a nil c never is.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
