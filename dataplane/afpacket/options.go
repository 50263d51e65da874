package afpacket

import (
	"fmt"
	"os"
	"time"
)

// Options chooses how a Capture receives (Open).
// The zero value is the socket path: the frames of a batch are received
// with one recvmmsg(2) straight into the caller's buffers.
type Options struct {
	// Ring receives through a TPACKET_V3 ring shared with the kernel
	// (mmap) instead: the kernel packs frames into blocks, a batch copies
	// them out of every block that is ready, and a syscall (a poller
	// wait) is only needed when none is. The kernel hands a block over
	// when it is full or when a periodic timer of RingRetire finds it
	// still open, so with little traffic a frame waits up to about twice
	// RingRetire (longer when the timer's softirq is delayed). The ring's
	// memory counts in the process's RSS from the start.
	Ring bool
	// RingBlockSize is the size of one block in bytes; 0 means
	// DefaultRingBlockSize. A block must hold the largest frame whole (a
	// 64 KiB TSO/GRO super-packet plus the ring's headers), so that no
	// frame is truncated: at least MinRingBlockSize, a multiple of the
	// page size. The kernel allocates blocks in powers of two pages, so
	// other sizes waste memory.
	RingBlockSize int
	// RingBlocks is the number of blocks, at least 2; 0 means
	// DefaultRingBlocks. The ring's memory is RingBlockSize*RingBlocks.
	RingBlocks int
	// RingRetire is the period of the kernel's timer that hands over a
	// block that is not full (tp_retire_blk_tov); 0 means
	// DefaultRingRetire. It is rounded up to whole milliseconds (the
	// kernel's unit), at most MaxRingRetire.
	RingRetire time.Duration
}

// Ring defaults: 32 blocks of 256 KiB, 8 MiB in all, as much as the
// socket path's receive buffer, and the shortest retire timeout the kernel
// offers. Measured (capture_ring_bench_test.go and a TCP stream with
// offloads on through a veth): the number of blocks bounds how long the
// reader may fall behind at low rates (each timeout hands over a block,
// however little it holds), and a 256 KiB block holds three 64 KiB
// super-packets where a 128 KiB one holds one. Of the super-packets of a
// TCP burst (BenchmarkCaptureTCPBurst) 4 MiB rings lost 8-28%, this one
// 0-2%, the socket path none.
const (
	DefaultRingBlockSize = 256 << 10
	DefaultRingBlocks    = 32
	DefaultRingRetire    = time.Millisecond

	// MinRingBlockSize holds a 65,535-byte frame, the block and frame
	// headers before it, rounded up to a power of two.
	MinRingBlockSize = 128 << 10
	// MaxRingRetire bounds RingRetire: longer only adds latency.
	MaxRingRetire = time.Second
	// maxRingBytes bounds the ring's memory.
	maxRingBytes = 1 << 30
)

// withDefaults returns o with zero ring settings replaced by the
// defaults, or an error naming the setting that is out of range.
func (o Options) withDefaults() (Options, error) {
	if !o.Ring {
		return o, nil
	}
	if o.RingBlockSize == 0 {
		o.RingBlockSize = DefaultRingBlockSize
	}
	if o.RingBlocks == 0 {
		o.RingBlocks = DefaultRingBlocks
	}
	if o.RingRetire == 0 {
		o.RingRetire = DefaultRingRetire
	}
	return o, o.check()
}

func (o Options) check() error {
	page := os.Getpagesize()
	switch {
	case o.RingBlockSize < MinRingBlockSize || o.RingBlockSize%page != 0:
		return fmt.Errorf("ring block size %d: want a multiple of the page size (%d) of at least %d", o.RingBlockSize, page, MinRingBlockSize)
	case o.RingBlocks < 2:
		return fmt.Errorf("ring of %d blocks: want at least 2", o.RingBlocks)
	case o.RingBlocks > maxRingBytes/o.RingBlockSize:
		return fmt.Errorf("ring of %d blocks of %d bytes: more than %d bytes", o.RingBlocks, o.RingBlockSize, maxRingBytes)
	case o.RingRetire < 0 || o.RingRetire > MaxRingRetire:
		return fmt.Errorf("ring retire timeout %v: want 1ms to %v", o.RingRetire, MaxRingRetire)
	}
	return nil
}

// retireMillis is RingRetire in the kernel's unit, rounded up.
func (o Options) retireMillis() uint32 {
	return uint32((o.RingRetire + time.Millisecond - 1) / time.Millisecond)
}
