package netcfg

import (
	"errors"
	"fmt"
)

// NetNSID identifies a network namespace: the device and inode of its
// nsfs file, as stat(2) of /proc/PID/ns/net gives them (`ls -iL`,
// `readlink` prints the inode as net:[INODE]), and its name under
// /run/netns when it has one. A journal records the namespace its
// changes were made in (the Host's NS ""), so that a revert from another
// namespace neither deletes look-alike objects there nor reports success
// while the changes remain.
type NetNSID struct {
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	Name string `json:"name,omitempty"` // under /run/netns; "" = none found
}

// Same reports whether n and o are the same namespace (the name is only
// a hint: it may have changed).
func (n NetNSID) Same(o NetNSID) bool { return n.Dev == o.Dev && n.Ino == o.Ino }

// String names the namespace as `readlink /proc/PID/ns/net` and
// `ip netns` would.
func (n NetNSID) String() string {
	s := fmt.Sprintf("net:[%d]", n.Ino)
	if n.Name != "" {
		s += " (/run/netns/" + n.Name + ")"
	}
	return s
}

// ErrOtherNetNS is returned (wrapped) by Revert when the journal's changes
// were made in another network namespace than the Host's.
var ErrOtherNetNS = errors.New("journal of another network namespace")

// sameNetNS refuses a journal whose recorded namespace is not h's. A
// journal without one (written before the field existed) is taken as
// h's, as it always was.
func sameNetNS(h Host, j *Journal) error {
	if j.NetNS == nil {
		return nil
	}
	here, err := h.NetNS()
	if err != nil {
		return fmt.Errorf("identify the network namespace to revert in: %w", err)
	}
	if !here.Same(*j.NetNS) {
		return fmt.Errorf("%w: the changes in %s were made in network namespace %s, this is %s; nothing was reverted",
			ErrOtherNetNS, j.path, *j.NetNS, here)
	}
	return nil
}

// recordNetNS stores h's namespace in a journal that has none yet.
func recordNetNS(h Host, j *Journal) error {
	if j.NetNS != nil {
		return nil
	}
	id, err := h.NetNS()
	if err != nil {
		return fmt.Errorf("identify the network namespace: %w", err)
	}
	j.NetNS = &id
	return nil
}
