package mmsg

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CmsgUint32 returns the first 4 bytes of data of the control message of
// the given level and type in the ancillary data ctrl (host byte order),
// or 0 if there is none.
func CmsgUint32(ctrl []byte, level, typ int32) uint32 {
	if d := CmsgData(ctrl, level, typ); len(d) >= 4 {
		return binary.NativeEndian.Uint32(d)
	}
	return 0
}

// CmsgData returns the data of the first control message of the given
// level and type in the ancillary data ctrl, or nil if there is none. It
// walks the cmsg headers by hand, bounded by len(ctrl):
// unix.ParseSocketControlMessage allocates.
func CmsgData(ctrl []byte, level, typ int32) []byte {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(ctrl) {
			return nil
		}
		if h.Level == level && h.Type == typ {
			return ctrl[unix.CmsgLen(0):n]
		}
		ctrl = ctrl[min(unix.CmsgSpace(n-unix.CmsgLen(0)), len(ctrl)):]
	}
	return nil
}
