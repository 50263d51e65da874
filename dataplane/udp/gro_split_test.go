package udp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/internal/mmsg"
)

// simMsg is a message as the kernel would hand it to a UDP_GRO socket.
type simMsg struct {
	data []byte
	seg  int
	from netip.AddrPort
}

// simDatagram is one datagram a reader returned.
type simDatagram struct {
	data []byte
	from netip.AddrPort
}

// refSplit is the expected datagrams of m, computed independently of
// groMsg.
func refSplit(m simMsg) []simDatagram {
	d := m.data
	if m.seg <= 0 || m.seg >= len(d) {
		return []simDatagram{{d, m.from}}
	}
	var out []simDatagram
	for len(d) > m.seg {
		out = append(out, simDatagram{d[:m.seg], m.from})
		d = d[m.seg:]
	}
	return append(out, simDatagram{d, m.from})
}

// simReader drives a groQueue the way readGRO does, with messages from a
// slice instead of a socket.
type simReader struct {
	q       groQueue
	in      []simMsg
	msgs    []groMsg
	dropped int // datagrams dropped for their buffer; messages for groBufSize
}

func newSimReader(in []simMsg) *simReader {
	return &simReader{q: newGROQueue(), in: in, msgs: make([]groMsg, mmsg.MaxBatch)}
}

// read is ReadBatch: 0 when the input is used up.
func (r *simReader) read(bufs [][]byte, sizes []int, from []netip.AddrPort) int {
	for {
		if r.q.pending() {
			out, d := r.q.drain(bufs, sizes, from)
			if r.dropped += d; out > 0 {
				return out
			}
			continue
		}
		if len(r.in) == 0 {
			return 0
		}
		if !largeBuffers(bufs) {
			r.receiveStaged()
			continue
		}
		if out := r.receiveInPlace(bufs, sizes, from); out > 0 {
			return out
		}
	}
}

func (r *simReader) receiveStaged() {
	area, m := r.q.recvArea(), r.in[0]
	r.in = r.in[1:]
	if len(m.data) > len(area) {
		r.dropped++
		return
	}
	r.q.pushReceived(groMsg{n: copy(area, m.data), seg: m.seg, from: m.from})
}

func (r *simReader) receiveInPlace(bufs [][]byte, sizes []int, from []netip.AddrPort) int {
	k := min(r.q.readLimit(len(bufs)), len(r.in))
	most, kept := 0, 0
	for _, m := range r.in[:k] {
		if len(m.data) > groBufSize { // the kernel truncates it
			r.dropped++
			continue
		}
		r.msgs[kept] = groMsg{n: copy(bufs[kept], m.data), seg: m.seg, from: m.from}
		most = max(most, r.msgs[kept].segments())
		kept++
	}
	r.in = r.in[k:]
	r.q.adapt(len(bufs), most)
	return r.q.expand(bufs, sizes, from, r.msgs[:kept])
}

// readAll reads everything with batches of n buffers of size bytes and
// returns the datagrams and the sizes of the batches.
func (r *simReader) readAll(t testing.TB, n, size int) (got []simDatagram, batches []int) {
	bufs, sizes := simBufs(n, size)
	return r.readAllInto(t, bufs, sizes, make([]netip.AddrPort, n))
}

func (r *simReader) readAllInto(t testing.TB, bufs [][]byte, sizes []int, from []netip.AddrPort) (got []simDatagram, batches []int) {
	n := len(bufs)
	for range 100000 {
		k := r.read(bufs, sizes, from)
		if k == 0 {
			return got, batches
		}
		if k > n {
			t.Fatalf("read returned %d entries for %d buffers", k, n)
		}
		for i := range k {
			got = append(got, simDatagram{bytes.Clone(bufs[i][:sizes[i]]), from[i]})
		}
		batches = append(batches, k)
	}
	t.Fatal("reader does not finish")
	return nil, nil
}

func simBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// patterned returns n bytes that differ from those of another tag or at
// another offset (mostly): cheaper than numbered, for fuzzing.
func patterned(tag byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = tag ^ byte(i) ^ byte(i>>8)*31 ^ byte(i>>16)*97
	}
	return b
}

// numbered returns n bytes that tell where they came from.
func numbered(tag string, n int) []byte {
	b := bytes.Repeat([]byte{'.'}, n)
	for i := 0; i < n; i += 16 {
		copy(b[i:], fmt.Sprintf("%s@%d;", tag, i))
	}
	return b[:n]
}

var (
	simA = netip.MustParseAddrPort("198.18.0.1:1000")
	simB = netip.MustParseAddrPort("[2001:db8::2]:2000")
)

// simTraffic mixes coalesced messages (with and without a short tail,
// with segment sizes 0, equal to and beyond the length), plain and
// zero-length datagrams, from two senders.
func simTraffic() []simMsg {
	return []simMsg{
		{numbered("a", 40*1400+100), 1400, simA},
		{numbered("b", 100), 0, simB},
		{nil, 0, simB},
		{numbered("c", 3*500), 500, simA},
		{numbered("d", 700), 700, simA},  // one segment, as long as the size
		{numbered("e", 300), 1400, simA}, // one segment, shorter than the size
		{numbered("f", 5*64), 64, simB},
		{numbered("g", 1), 0, simA},
		{numbered("h", 60*1000+1), 1000, simB},
		{nil, 0, simA},
		{numbered("i", 2*1200), 1200, simA},
	}
}

func expected(in []simMsg) []simDatagram {
	var want []simDatagram
	for _, m := range in {
		want = append(want, refSplit(m)...)
	}
	return want
}

func checkDatagrams(t *testing.T, got, want []simDatagram) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].data, want[i].data) || got[i].from != want[i].from {
			t.Fatalf("datagram %d: %d bytes %.12q from %v, want %d bytes %.12q from %v",
				i, len(got[i].data), got[i].data, got[i].from, len(want[i].data), want[i].data, want[i].from)
		}
	}
}

func TestGROSplitInOrder(t *testing.T) {
	for _, n := range []int{1, 2, 3, 8, 32, 41, 64, 200} {
		for _, size := range []int{groBufSize, 2048} { // in place; staged one by one
			t.Run(fmt.Sprintf("batch%d/buf%d", n, size), func(t *testing.T) {
				in := simTraffic()
				r := newSimReader(in)
				got, _ := r.readAll(t, n, size)
				checkDatagrams(t, got, expected(in))
				if r.dropped != 0 || r.q.pending() {
					t.Fatalf("dropped %d, pending %v", r.dropped, r.q.pending())
				}
			})
		}
	}
}

// TestGROSplitOverflowManyMessages: a first batch of coalesced messages
// (read limit not yet lowered) stages more than one message.
func TestGROSplitOverflowManyMessages(t *testing.T) {
	var in []simMsg
	for i := range 8 {
		in = append(in, simMsg{numbered(fmt.Sprint(i), 10*100-i), 100, simA})
	}
	r := newSimReader(in)
	got, batches := r.readAll(t, 8, groBufSize)
	checkDatagrams(t, got, expected(in))
	// 80 datagrams: 8 from the first read, 72 staged from 8 messages.
	if len(batches) != 10 || batches[0] != 8 || batches[9] != 8 {
		t.Fatalf("batches %v, want 10 full ones", batches)
	}
}

// TestGROSplitExactFit: messages whose datagrams end exactly at the end of
// the batch, and one that starts exactly there.
func TestGROSplitExactFit(t *testing.T) {
	in := []simMsg{
		{numbered("a", 3*10), 10, simA},
		{numbered("b", 5*10), 10, simA}, // fills 8 buffers exactly
		{numbered("c", 2*10), 10, simA}, // starts beyond them
		{numbered("d", 8), 0, simB},
	}
	r := newSimReader(in)
	got, batches := r.readAll(t, 8, groBufSize)
	checkDatagrams(t, got, expected(in))
	if len(batches) < 2 || batches[0] != 8 {
		t.Fatalf("batches %v", batches)
	}
}

// TestGROSplitReadLimit: after a coalesced batch the reader reads only as
// many messages as fit; after a plain one, up to groPlainRead again.
func TestGROSplitReadLimit(t *testing.T) {
	var q groQueue
	for _, tc := range []struct{ n, most, want int }{
		{32, 0, 8}, {32, 1, 8}, {4, 1, 4}, {32, 45, 1}, {32, 8, 4}, {64, 20, 3}, {1, 64, 1},
	} {
		q.adapt(tc.n, tc.most)
		if got := q.readLimit(tc.n); got != tc.want {
			t.Errorf("after a batch of %d with at most %d datagrams a message: readLimit = %d, want %d",
				tc.n, tc.most, got, tc.want)
		}
	}
}

// TestGROSplitDropsOversized: staged datagrams larger than their buffer
// are dropped and counted, the others delivered in order.
func TestGROSplitDropsOversized(t *testing.T) {
	in := []simMsg{
		{numbered("a", 4*1400+100), 1400, simA},
		{numbered("b", 900), 0, simB},
		{nil, 0, simB},
	}
	r := newSimReader(in)
	got, _ := r.readAll(t, 3, 1000)
	want := []simDatagram{{in[0].data[4*1400:], simA}, {in[1].data, simB}, {nil, simB}}
	checkDatagrams(t, got, want)
	if r.dropped != 4 {
		t.Fatalf("dropped %d, want 4", r.dropped)
	}
}

func TestGROSplitZeroAllocs(t *testing.T) {
	in := simTraffic()
	r := newSimReader(nil)
	bufs, sizes := simBufs(8, groBufSize)
	from := make([]netip.AddrPort, len(bufs))
	allocs := testing.AllocsPerRun(20, func() {
		r.in = in
		for r.read(bufs, sizes, from) > 0 {
		}
	})
	if allocs != 0 {
		t.Fatalf("splitting allocates %v times per run, want 0", allocs)
	}
}

func TestGROMsgSegments(t *testing.T) {
	for _, tc := range []struct{ n, seg, want int }{
		{0, 0, 1}, {0, 100, 1}, {100, 0, 1}, {100, -5, 1}, {100, 100, 1}, {100, 1000, 1},
		{101, 100, 2}, {200, 100, 2}, {56100, 1400, 41}, {5, 1, 5},
	} {
		m := groMsg{n: tc.n, seg: tc.seg}
		if got := m.segments(); got != tc.want {
			t.Errorf("groMsg{n: %d, seg: %d}.segments() = %d, want %d", tc.n, tc.seg, got, tc.want)
		}
	}
}
