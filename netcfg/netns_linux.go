//go:build linux

package netcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (as by
// `ip netns add` and netns.NewNamed).
const netnsDir = "/run/netns"

// NetNS identifies the namespace that is this Host's NS "".
func (h *NetlinkHost) NetNS() (NetNSID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.self), &st); err != nil {
		return NetNSID{}, fmt.Errorf("stat network namespace: %w", err)
	}
	id := NetNSID{Dev: st.Dev, Ino: st.Ino}
	id.Name = namedNetNS(id)
	return id, nil
}

// SelfNetNS identifies the network namespace the process runs in.
func SelfNetNS() (NetNSID, error) {
	id := statID("/proc/self/ns/net")
	if id == (NetNSID{}) {
		return id, fmt.Errorf("stat /proc/self/ns/net: cannot identify this process's network namespace")
	}
	id.Name = namedNetNS(id)
	return id, nil
}

// namedNetNS returns the name under /run/netns of the namespace id, or
// "" when it has none (or it cannot be seen).
func namedNetNS(id NetNSID) string {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if statID(filepath.Join(netnsDir, e.Name())).Same(id) {
			return e.Name()
		}
	}
	return ""
}

// statID identifies the file at path (zero if it cannot be read).
func statID(path string) NetNSID {
	fi, err := os.Stat(path)
	if err != nil {
		return NetNSID{}
	}
	st := fi.Sys().(*syscall.Stat_t)
	return NetNSID{Dev: st.Dev, Ino: st.Ino}
}

// OpenNetNS opens the namespace id through its name under /run/netns
// (the recorded one, or any other that leads to it). A namespace without
// a name cannot be opened this way: the error wraps ErrNotFound.
func OpenNetNS(id NetNSID) (netns.NsHandle, error) {
	name := id.Name
	if name == "" || !statID(filepath.Join(netnsDir, name)).Same(id) {
		name = namedNetNS(id)
	}
	if name == "" {
		return netns.None(), fmt.Errorf("network namespace %s has no name under %s: %w", id, netnsDir, ErrNotFound)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return netns.None(), fmt.Errorf("open network namespace %s: %w", id, mapErr(err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil || !(NetNSID{Dev: st.Dev, Ino: st.Ino}).Same(id) {
		h.Close()
		return netns.None(), fmt.Errorf("network namespace %s changed while it was opened: %w", id, ErrNotFound)
	}
	return h, nil
}
