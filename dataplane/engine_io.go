package dataplane

import (
	"io"
	"net/netip"
)

// newBuffers returns n buffers of size bytes each, carved from one
// allocation. Each is capped at its own size so that nothing written
// through one can spill into the next.
func newBuffers(n, size int) [][]byte {
	block := make([]byte, n*size)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = block[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

// txBatch collects the datagrams of one batch for Transport.WriteBatch.
// Its slices are allocated once at batch capacity and reused.
type txBatch struct {
	bufs [][]byte
	to   []netip.AddrPort
	peer []*peer
}

// newTxBatch returns an empty batch with room for n datagrams.
func newTxBatch(n int) txBatch {
	return txBatch{bufs: make([][]byte, 0, n), to: make([]netip.AddrPort, 0, n), peer: make([]*peer, 0, n)}
}

// reset empties b, keeping its storage.
func (b *txBatch) reset() {
	b.bufs, b.to, b.peer = b.bufs[:0], b.to[:0], b.peer[:0]
}

// add queues buf for p at to.
func (b *txBatch) add(buf []byte, to netip.AddrPort, p *peer) {
	b.bufs = append(b.bufs, buf)
	b.to = append(b.to, to)
	b.peer = append(b.peer, p)
}

// send writes the batch to the transport. WriteBatch stops at the first
// failing datagram: that one is counted as send_error and the rest is
// retried, so one unreachable peer does not cost the others their packets.
func (e *Engine) send(b *txBatch, now int64) {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	for off := 0; off < len(b.bufs); off++ {
		n, err := e.transport.WriteBatch(b.bufs[off:], b.to[off:])
		n = min(max(n, 0), len(b.bufs)-off)
		e.countSent(b, off, off+n)
		if off += n; off == len(b.bufs) {
			return
		}
		if err == nil {
			err = io.ErrShortWrite // a short count without error: don't spin
		}
		e.r.drop(DropSendError, dropInfo{peer: b.peer[off], addr: b.to[off], err: err}, now)
	}
}

// countSent credits datagrams [from, to) of b to their peers, keepalive
// requests and replies apart.
func (e *Engine) countSent(b *txBatch, from, to int) {
	for i := from; i < to; i++ {
		c := &b.peer[i].ctr
		switch keepaliveType(b.bufs[i]) {
		case kaTypeRequest:
			c.keepalivesTx.Add(1)
			continue
		case kaTypeReply:
			c.keepalivesAnswered.Add(1)
			continue
		}
		c.txPackets.Add(1)
		c.txBytes.Add(uint64(len(b.bufs[i])))
	}
}

// inject hands pkts to the local stack and returns how many it took. As in
// send, a failing packet is counted as inject_error and the rest retried.
// peers (nil for ICMP errors) names the peer of each packet for the log.
func (r *Router) inject(pkts [][]byte, peers []*peer, now int64) int {
	r.injMu.Lock()
	defer r.injMu.Unlock()
	done := 0
	for off := 0; off < len(pkts); off++ {
		n, err := r.injector.WriteBatch(pkts[off:])
		n = min(max(n, 0), len(pkts)-off)
		done += n
		if off += n; off == len(pkts) {
			break
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		r.drop(DropInjectError, dropInfo{peer: peerAt(peers, off), err: err}, now)
	}
	return done
}

// peerAt returns peers[i], or nil when peers is nil.
func peerAt(peers []*peer, i int) *peer {
	if peers == nil {
		return nil
	}
	return peers[i]
}
