package ebpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/perf"
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
	closed                  atomic.Bool
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
	d.exc = &Exceptions{rd: rd, rec: perf.Record{RawSample: make([]byte, 0, 64<<10+metaLen+8)}}
	return d.exc, nil
}

// ReadBatch implements dataplane.Capture: it blocks for the first packet,
// then takes whatever else is pending, up to len(bufs). A packet larger
// than its buffer is dropped (counted in TooBig), never truncated. After
// Close it returns an error wrapping net.ErrClosed.
func (e *Exceptions) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n := 0
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
			n++
			e.rd.SetDeadline(pastDeadline) // the rest without blocking
		}
	}
	return n, nil
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

// Close implements dataplane.Capture; a blocked ReadBatch returns.
func (e *Exceptions) Close() error {
	e.closed.Store(true)
	if err := e.rd.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("ebpf: closing the exception buffer: %w", err)
	}
	return nil
}
