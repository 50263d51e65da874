// Package wgflood forges WireGuard handshake initiations for tests: a
// flood of messages that pass the responder's first check (MAC1, keyed
// with its public key only, which anyone may know) and so cost it real
// work, as an attacker's would. Nothing here can complete a handshake.
package wgflood

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/crypto/blake2s"
)

// Message layout (the WireGuard protocol): an initiation is 148 bytes,
// its MAC1 the 16 bytes after the first 116, MAC2 the last 16.
const (
	InitiationSize = 148
	mac1Offset     = 116
	labelMAC1      = "mac1----"
)

// Initiation returns a forged initiation to the responder with public key
// pub: random sender index, ephemeral key, encrypted static key and
// timestamp (which will not decrypt), a valid MAC1 and no MAC2.
func Initiation(pub [32]byte) []byte {
	msg := make([]byte, InitiationSize)
	binary.LittleEndian.PutUint32(msg, 1)
	_, _ = rand.Read(msg[4:mac1Offset])
	SetMAC1(msg, pub)
	return msg
}

// SetMAC1 computes msg's MAC1 for the responder pub, as the protocol
// says: BLAKE2s-128 keyed with BLAKE2s-256("mac1----" || pub) over the
// message up to the MACs.
func SetMAC1(msg []byte, pub [32]byte) {
	h, _ := blake2s.New256(nil)
	h.Write([]byte(labelMAC1))
	h.Write(pub[:])
	key := h.Sum(nil)
	mac, _ := blake2s.New128(key)
	mac.Write(msg[:len(msg)-32])
	copy(msg[len(msg)-32:len(msg)-16], mac.Sum(nil))
}

// Flood sends distinct forged initiations to dst from c until ctx is done
// or d has passed, whichever comes first, and returns how many it sent.
// Each message gets a fresh sender index and so a new MAC1: no two are
// identical (a replay filter would take that shortcut).
func Flood(ctx context.Context, c *net.UDPConn, dst netip.AddrPort, pub [32]byte, d time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	pool := make([][]byte, 256)
	for i := range pool {
		pool[i] = Initiation(pub)
	}
	sent := 0
	for ctx.Err() == nil {
		for _, msg := range pool {
			binary.LittleEndian.PutUint32(msg[4:], uint32(sent))
			SetMAC1(msg, pub)
			if _, err := c.WriteToUDPAddrPort(msg, dst); err != nil {
				if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
					continue // the sender's own queue is full
				}
				return sent, err
			}
			sent++
		}
	}
	return sent, nil
}
