package dataplane

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsgUint32 returns the first 4 bytes of data of the control message of
// the given level and type in the ancillary data ctrl (host byte order),
// or 0 if there is none. It walks the cmsg headers by hand, bounded by
// len(ctrl): unix.ParseSocketControlMessage allocates.
func cmsgUint32(ctrl []byte, level, typ int32) uint32 {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(ctrl) {
			return 0
		}
		if h.Level == level && h.Type == typ && n >= unix.CmsgLen(4) {
			return *(*uint32)(unsafe.Pointer(&ctrl[unix.CmsgLen(0)]))
		}
		ctrl = ctrl[min(unix.CmsgSpace(n-unix.CmsgLen(0)), len(ctrl)):]
	}
	return 0
}
