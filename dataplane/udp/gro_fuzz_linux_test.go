package udp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpCmsg returns a SOL_UDP control message of type typ carrying data.
func udpCmsg(typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// groCmsg returns a UDP_GRO control message carrying seg (an int).
func groCmsg(seg int32) []byte {
	return udpCmsg(unix.UDP_GRO, binary.NativeEndian.AppendUint32(nil, uint32(seg)))
}

func TestGROSegmentSize(t *testing.T) {
	other := groCmsg(1400)
	(*unix.Cmsghdr)(unsafe.Pointer(&other[0])).Type = unix.UDP_SEGMENT
	for _, tc := range []struct {
		name string
		ctrl []byte
		want int
	}{
		{"none", nil, 0},
		{"gro", groCmsg(1400), 1400},
		{"after another", append(other, groCmsg(512)...), 512},
		{"only another", other, 0},
		{"short", groCmsg(1400)[:unix.CmsgLen(2)], 0},
		{"garbage", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, 0},
		{"zero length header", make([]byte, 64), 0},
	} {
		if got := groSegmentSize(tc.ctrl); got != tc.want {
			t.Errorf("%s: groSegmentSize = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// fuzzPool is where fuzzed messages take their bytes from, at offsets that
// differ per message.
var fuzzPool = patterned(0x5a, 1<<18)

// fuzzGROInput decodes data into a batch size, a buffer size and messages
// whose segment sizes come from control data (a valid UDP_GRO message with
// any value, or garbage).
func fuzzGROInput(data []byte) (n, size int, in []simMsg) {
	if len(data) < 2 {
		return 1, groBufSize, nil
	}
	n, size = int(data[0]%40)+1, groBufSize
	if data[1]&1 != 0 {
		size = int(data[1]) * 8 // 0..2040: staged, with drops
	}
	total, bytes := 0, 0 // bounded to keep an input fast
	for data = data[2:]; len(data) >= 4 && len(in) < 64 && total < 20000 && bytes < 1<<20; {
		length := int(binary.LittleEndian.Uint16(data)) % 9000
		if data[2]&0x80 != 0 {
			length += groBufSize - 4500 // around and beyond the largest message
		}
		var ctrl []byte
		k := min(int(data[3]&0x3f), len(data)-4)
		if data[3]&0x40 != 0 {
			ctrl = append(ctrl, data[4:4+k]...) // garbage
		} else if k >= 4 {
			ctrl = groCmsg(int32(binary.LittleEndian.Uint32(data[4:])) % 3000)
		}
		off := len(in) * 4099 % (len(fuzzPool) - groBufSize - 4500)
		m := simMsg{data: fuzzPool[off : off+length], seg: groSegmentSize(ctrl), from: simA}
		in, total, bytes = append(in, m), total+len(refSplit(m)), bytes+length
		data = data[4+k:]
	}
	return n, size, in
}

// FuzzGROSplit: whatever the messages and their control data, splitting
// never panics, returns every datagram that fits its buffer in order, and
// counts the others.
func FuzzGROSplit(f *testing.F) {
	f.Add([]byte{8, 0, 0x10, 0x02, 4, 0x78, 5, 0, 0})
	f.Add([]byte{3, 1, 0xff, 0xff, 0x44, 1, 2, 3, 4})
	f.Add([]byte{1, 0, 0x00, 0x80, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00})
	f.Add([]byte{39, 0x81, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff})
	large, _ := simBufs(40, groBufSize)
	small, sizes := simBufs(40, 2048)
	from := make([]netip.AddrPort, 40)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, size, in := fuzzGROInput(data)
		bufs := large[:n]
		if size < groBufSize {
			bufs = small[:n]
			for i := range bufs {
				bufs[i] = bufs[i][:size]
			}
		}
		r := newSimReader(in)
		got, _ := r.readAllInto(t, bufs, sizes[:n], from[:n])
		var want []simDatagram
		drops := 0
		for _, m := range in {
			switch {
			case len(m.data) > groBufSize:
				drops++ // a truncated message
				continue
			case size < groBufSize:
				for _, d := range refSplit(m) {
					if len(d.data) > size {
						drops++
					} else {
						want = append(want, d)
					}
				}
				continue
			}
			want = append(want, refSplit(m)...)
		}
		checkDatagrams(t, got, want)
		if r.dropped != drops {
			t.Fatalf("dropped %d, want %d", r.dropped, drops)
		}
	})
}
