package ebpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/perf"

	"tunnel-agent/dataplane/afpacket"
)

// DefaultExceptionBuffer is the perf buffer size per CPU for exceptions.
const DefaultExceptionBuffer = 256 << 10

// metaLen is the size of struct exception_meta in bpf/tunnel.c, which
// heads every record: len u32, gso_size u16, reason u8, l2_len u8.
const metaLen = 8

// Exceptions delivers the LAN packets the programs hand to the userspace
// path, from the IP header on, as a dataplane.Capture: the userspace
// engine runs unchanged on them and answers them (ICMP errors) or sends
// them itself. ReadBatch neither allocates nor copies more than once.
type Exceptions struct {
	rd  *perf.Reader
	rec perf.Record
	// Lost counts records the kernel could not write (buffer full);
	// TooBig those larger than the reader's buffer; Malformed records too
	// short for their own header.
	Lost, TooBig, Malformed atomic.Uint64

	// The reader's own: super-packets are cut and partial checksums
	// completed as the AF_PACKET capture does (afpacket.Segmenter), so
	// that the engine sees the packets their sender meant.
	seg    *afpacket.Segmenter
	meta   []afpacket.Meta
	closed atomic.Bool
}

// pastDeadline makes a perf read return at once when nothing is pending.
var pastDeadline = time.Unix(1, 0)

// Exceptions opens the reader of the exception perf buffer (perCPU bytes
// per CPU, 0 meaning DefaultExceptionBuffer) on first call and returns it;
// later calls return the same reader until it is closed (the engine
// closes its capture when it stops), then a new one. Until it is open, exceptions are
// dropped and counted as exception_lost.
func (d *Dataplane) Exceptions(perCPU int) (*Exceptions, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	if d.exc != nil && !d.exc.closed.Load() {
		return d.exc, nil
	}
	rd, err := perf.NewReader(d.objs.Exceptions, orDefault(perCPU, DefaultExceptionBuffer))
	if err != nil {
		return nil, fmt.Errorf("ebpf: opening the exception buffer: %w", err)
	}
	d.exc = &Exceptions{rd: rd, rec: perf.Record{RawSample: make([]byte, 0, 64<<10+metaLen+8)},
		seg: afpacket.NewSegmenter(d.lanMTULocked())}
	return d.exc, nil
}

// ReadBatch implements dataplane.Capture: it blocks for the first packet,
// then takes whatever else is pending, up to len(bufs). Super-packets (LAN
// offloads on) come back cut into their segments and partial checksums
// completed; segments that do not fit the batch come with the next call.
// A packet larger than its buffer is dropped (counted in TooBig), never
// truncated. After Close it returns an error wrapping net.ErrClosed.
func (e *Exceptions) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if n := e.seg.Drain(bufs, sizes); n > 0 {
		return n, nil
	}
	limit := e.seg.ReadLimit(len(bufs))
	if cap(e.meta) < limit {
		e.meta = make([]afpacket.Meta, 0, len(bufs))
	}
	n, err := e.read(bufs[:limit], sizes)
	if n > 0 {
		return e.seg.Finish(bufs, sizes, e.meta[:n]), nil
	}
	return 0, err
}

// read reads up to len(bufs) packets, and their Meta into e.meta. An error
// after the first packet ends the batch and is left for the next call.
func (e *Exceptions) read(bufs [][]byte, sizes []int) (int, error) {
	n := 0
	e.meta = e.meta[:0]
	e.rd.SetDeadline(time.Time{})
	for n < len(bufs) {
		err := e.rd.ReadInto(&e.rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, nil
			}
			if errors.Is(err, perf.ErrClosed) {
				if n > 0 {
					return n, nil
				}
				return 0, fmt.Errorf("ebpf: exceptions: %w", net.ErrClosed)
			}
			return n, fmt.Errorf("ebpf: exceptions: %w", err)
		}
		if e.rec.LostSamples > 0 {
			e.Lost.Add(e.rec.LostSamples)
			continue
		}
		if size, ok := e.packet(bufs[n]); ok {
			sizes[n] = size
			e.meta = append(e.meta, packetMeta(bufs[n][:size], nativeEndian.Uint16(e.rec.RawSample[4:])))
			n++
			e.rd.SetDeadline(pastDeadline) // the rest without blocking
		}
	}
	return n, nil
}

// packetMeta describes an exception packet for the Segmenter: a
// super-packet (gsoSize set) by its kind, and whether its TCP or UDP
// checksum was left to offload (always so in a super-packet).
func packetMeta(pkt []byte, gsoSize uint16) afpacket.Meta {
	if gsoSize == 0 {
		return afpacket.Meta{Partial: afpacket.ChecksumPending(pkt)}
	}
	m := afpacket.Meta{Partial: true, GSOSize: gsoSize}
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == protoTCP:
		m.GSOType = afpacket.GSOTCPv4
	case len(pkt) >= 40 && pkt[0]>>4 == 6 && pkt[6] == protoTCP:
		m.GSOType = afpacket.GSOTCPv6
	case len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == protoUDP, len(pkt) >= 40 && pkt[0]>>4 == 6 && pkt[6] == protoUDP:
		m.GSOType = afpacket.GSOUDP
	}
	return m
}

// IP protocol numbers packetMeta tells super-packets apart by.
const (
	protoTCP = 6
	protoUDP = 17
)

// lanMTULocked is the LAN MTU (Config.LANMTU if set, else the LAN
// interface's as Attach read it, else 1500); d.mu held.
func (d *Dataplane) lanMTULocked() int {
	switch {
	case d.cfg.LANMTU > 0:
		return d.cfg.LANMTU
	case d.ifaces.lanMTU > 0:
		return d.ifaces.lanMTU
	}
	return 1500
}

// packet copies the current record's packet into buf.
func (e *Exceptions) packet(buf []byte) (int, bool) {
	raw := e.rec.RawSample
	if len(raw) < metaLen {
		e.Malformed.Add(1)
		return 0, false
	}
	frame, l2 := int(nativeEndian.Uint32(raw)), int(raw[7])
	if frame < l2 || metaLen+frame > len(raw) {
		e.Malformed.Add(1)
		return 0, false
	}
	pkt := raw[metaLen+l2 : metaLen+frame]
	if len(pkt) > len(buf) {
		e.TooBig.Add(1)
		return 0, false
	}
	return copy(buf, pkt), true
}

// SegmentsDropped counts segments of super-packets dropped because the
// segments before them filled the engine's batch.
func (e *Exceptions) SegmentsDropped() uint64 { return e.seg.Dropped() }

// Close implements dataplane.Capture; a blocked ReadBatch returns.
func (e *Exceptions) Close() error {
	e.closed.Store(true)
	if err := e.rd.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("ebpf: closing the exception buffer: %w", err)
	}
	return nil
}
