// Package ethfeat reads and changes the ethtool features of a network
// interface (ETHTOOL_GFEATURES / ETHTOOL_SFEATURES over the SIOCETHTOOL
// ioctl), the offloads `ethtool -k/-K` shows and sets.
//
// Hand-written in place of github.com/safchain/ethtool's Features,
// FeaturesWithState and Change: those pass the address of a 16 KiB
// stack variable to the kernel as a uintptr through a function call, so a
// stack move between the conversion and the ioctl (goroutine stack growth
// or shrinking) makes the kernel read or write the old stack. The CI saw
// it as every feature of an interface read as false. Here the request
// buffer and the ifreq stay typed Go pointers (which a stack move
// updates) up to the ioctl's own argument list, the one place a
// pointer-to-uintptr conversion is safe, and stay referenced until it
// returns.
package ethfeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// State is one feature's state, as `ethtool -k` shows it.
type State struct {
	Available    bool // can be changed (not "[fixed]")
	Requested    bool // what was last asked for
	Active       bool // what is in effect
	NeverChanged bool // never changed since the device was created
}

// Socket issues ethtool requests for the interfaces of the network
// namespace it was opened in.
type Socket struct{ fd int }

// Open opens a socket in the calling thread's network namespace.
func Open() (*Socket, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	return &Socket{fd: fd}, nil
}

// Close closes the socket.
func (s *Socket) Close() error { return unix.Close(s.fd) }

const (
	ethSSFeatures = 4  // ETH_SS_FEATURES
	gstringLen    = 32 // ETH_GSTRING_LEN
	// maxFeatures bounds the kernel's answer: Linux has ~70 features.
	maxFeatures = 1 << 12
)

var ne = binary.NativeEndian

// ifreq is struct ifreq with ifr_data: the pointer field keeps data
// referenced while the ioctl runs.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte // the rest of the union
}

// ioctl runs SIOCETHTOOL for ifname with the request in buf (heap).
func (s *Socket) ioctl(ifname string, buf []byte) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	ifr := &ifreq{data: unsafe.Pointer(&buf[0])}
	copy(ifr.name[:], ifname)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(buf)
	if e != 0 {
		return e
	}
	return nil
}

// request returns a heap buffer of n bytes starting with cmd and arg.
func request(n int, cmd, arg uint32) []byte {
	b := make([]byte, n)
	ne.PutUint32(b[0:], cmd)
	ne.PutUint32(b[4:], arg)
	return b
}

// Names returns the interface's feature names in bit order.
func (s *Socket) Names(ifname string) ([]string, error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask u64, data[1] u32.
	info := request(20, unix.ETHTOOL_GSSET_INFO, 0)
	ne.PutUint64(info[8:], 1<<ethSSFeatures)
	if err := s.ioctl(ifname, info); err != nil {
		return nil, fmt.Errorf("ethtool feature count of %s: %w", ifname, err)
	}
	n := int(ne.Uint32(info[16:]))
	if ne.Uint64(info[8:]) == 0 || n == 0 {
		return nil, nil
	}
	if n > maxFeatures {
		return nil, fmt.Errorf("ethtool feature count of %s: %d", ifname, n)
	}
	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	str := request(12+n*gstringLen, unix.ETHTOOL_GSTRINGS, ethSSFeatures)
	ne.PutUint32(str[8:], uint32(n))
	if err := s.ioctl(ifname, str); err != nil {
		return nil, fmt.Errorf("ethtool feature names of %s: %w", ifname, err)
	}
	names := make([]string, n)
	for i := range names {
		b := str[12+i*gstringLen : 12+(i+1)*gstringLen]
		if end := indexZero(b); end >= 0 {
			b = b[:end]
		}
		names[i] = string(b)
	}
	return names, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// Features returns the state of every named feature of the interface.
func (s *Socket) Features(ifname string) (map[string]State, error) {
	names, err := s.Names(ifname)
	if err != nil || len(names) == 0 {
		return map[string]State{}, err
	}
	blocks := (len(names) + 31) / 32
	// struct ethtool_gfeatures: cmd, size, then per block available,
	// requested, active, never_changed (u32 each).
	req := request(8+16*blocks, unix.ETHTOOL_GFEATURES, uint32(blocks))
	if err := s.ioctl(ifname, req); err != nil {
		return nil, fmt.Errorf("ethtool features of %s: %w", ifname, err)
	}
	out := make(map[string]State, len(names))
	for i, name := range names {
		if name == "" {
			continue
		}
		blk, bit := req[8+16*(i/32):], uint32(1)<<(i%32)
		out[name] = State{
			Available:    ne.Uint32(blk[0:])&bit != 0,
			Requested:    ne.Uint32(blk[4:])&bit != 0,
			Active:       ne.Uint32(blk[8:])&bit != 0,
			NeverChanged: ne.Uint32(blk[12:])&bit != 0,
		}
	}
	return out, nil
}

// Change requests the given features on or off; a name the interface
// does not have is an error and nothing is changed.
func (s *Socket) Change(ifname string, want map[string]bool) error {
	names, err := s.Names(ifname)
	if err != nil {
		return err
	}
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	blocks := (len(names) + 31) / 32
	// struct ethtool_sfeatures: cmd, size, then per block valid, requested.
	req := request(8+8*max(blocks, 1), unix.ETHTOOL_SFEATURES, uint32(blocks))
	for name, on := range want {
		i, ok := index[name]
		if !ok {
			return fmt.Errorf("change features of %s: %w: %q", ifname, ErrUnknownFeature, name)
		}
		blk, bit := req[8+8*(i/32):], uint32(1)<<(i%32)
		ne.PutUint32(blk[0:], ne.Uint32(blk[0:])|bit)
		if on {
			ne.PutUint32(blk[4:], ne.Uint32(blk[4:])|bit)
		}
	}
	if err := s.ioctl(ifname, req); err != nil {
		return fmt.Errorf("change features of %s: %w", ifname, err)
	}
	return nil
}

// ErrUnknownFeature is returned by Change for a feature name the
// interface does not have.
var ErrUnknownFeature = errors.New("unsupported feature")
