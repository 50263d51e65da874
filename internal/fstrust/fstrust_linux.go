// Package fstrust opens the files the agent trusts (its state directory,
// journal, lock and key files) only when nobody else could have planted
// or changed them: a directory must be owned by the agent's user (or
// root), writable by no one else, not a symbolic link, and reached
// through parents that only root or the agent's user can change (as
// OpenSSH's StrictModes checks a home directory); a file is opened
// without following a symbolic link and without blocking on a FIFO or a
// device, and is then checked on its open descriptor (fstat): a regular
// file, owned by the agent's user, without the mode bits the caller
// forbids.
package fstrust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUntrusted matches (errors.Is) every refusal of this package.
var ErrUntrusted = errors.New("untrusted file or directory")

// untrustedError is a refusal; its message says what and why.
type untrustedError struct{ msg string }

func (e untrustedError) Error() string        { return e.msg }
func (e untrustedError) Is(target error) bool { return target == ErrUntrusted }

// untrusted formats a refusal.
func untrusted(format string, args ...any) error {
	return untrustedError{fmt.Sprintf(format, args...)}
}

// owner is the uid of fi's file.
func owner(fi fs.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }

// trustedOwner reports whether a directory owned by uid may hold the
// agent's files: its own user's, or root's (root can change anything
// anyway).
func trustedOwner(uid uint32) bool {
	return uid == uint32(os.Geteuid()) || uid == 0
}

// EnsureDir creates the directory path (mode 0700; missing parents 0755)
// when it does not exist, then checks it with CheckDir.
func EnsureDir(what, path string) error {
	err := os.Mkdir(path, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			err = os.Mkdir(path, 0o700)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s %s: %w", what, path, err)
	}
	return CheckDir(what, path)
}

// CheckDir refuses the directory path (called what in messages) unless
// it is a real directory (not a symbolic link), owned by the agent's
// user or root, and writable by no one else, and every parent directory
// is owned by the agent's user or root and either writable by no one
// else or sticky (as /tmp: others cannot rename or remove what they do
// not own in it).
func CheckDir(what, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return untrusted("%s %s is a symbolic link (whoever can re-point it chooses what the agent writes and trusts); give the directory itself", what, path)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory", what, path)
	}
	if err := checkDirEntry(what, path, fi, false); err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return fmt.Errorf("%s %s: resolve parent: %w", what, path, err)
	}
	for dir := parent; ; dir = filepath.Dir(dir) {
		pi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("%s %s: parent: %w", what, path, err)
		}
		if err := checkDirEntry(what+" "+path+": parent", dir, pi, true); err != nil {
			return err
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// checkDirEntry checks a directory's owner and mode; a parent may be
// writable by others when it is sticky.
func checkDirEntry(what, path string, fi fs.FileInfo, parent bool) error {
	if uid := owner(fi); !trustedOwner(uid) {
		return untrusted("%s %s is owned by uid %d, not by this user (uid %d) or root; whoever owns it can plant files in it",
			what, path, uid, os.Geteuid())
	}
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 && !(parent && fi.Mode()&fs.ModeSticky != 0) {
		return untrusted("%s %s is writable by group or others (mode %04o); run `chmod go-w %s` or use another directory",
			what, path, perm, path)
	}
	return nil
}

// OpenFile opens path (called what in messages) with flag and perm as
// os.OpenFile does, but never through a symbolic link (O_NOFOLLOW) and
// never blocking on a FIFO or device (O_NONBLOCK), and then refuses it
// unless it is a regular file owned by the agent's user with none of
// the permission bits in forbid.
func OpenFile(what, path string, flag int, perm, forbid fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, untrusted("%s %s is a symbolic link; give the file itself", what, path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = CheckFile(what, path, fi, forbid)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckFile refuses fi (the file at path, called what) unless it is a
// regular file owned by the agent's user with none of the bits in forbid.
func CheckFile(what, path string, fi fs.FileInfo, forbid fs.FileMode) error {
	if !fi.Mode().IsRegular() {
		return untrusted("%s %s is not a regular file (%s)", what, path, fileType(fi.Mode()))
	}
	if uid := owner(fi); uid != uint32(os.Geteuid()) {
		return untrusted("%s %s is owned by uid %d, not by this user (uid %d)", what, path, uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&forbid != 0 {
		return untrusted("%s %s has mode %04o: %s", what, path, perm, forbidden(forbid&perm))
	}
	return nil
}

// forbidden says what the bits b allow.
func forbidden(b fs.FileMode) string {
	if b&0o022 != 0 {
		return "group or others may write it"
	}
	return "group or others may read it"
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return m.Type().String()
}

// CheckSocket refuses the unix socket at path (called what) unless it is
// a socket owned by the agent's user or root that no one else may
// connect to (write). A socket that cannot be looked at is left to the
// caller's connect, which reports why.
func CheckSocket(what, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return untrusted("%s %s is not a socket (%s)", what, path, fileType(fi.Mode()))
	}
	if uid := owner(fi); !trustedOwner(uid) {
		return untrusted("%s %s is owned by uid %d, not by this user (uid %d) or root", what, path, uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return untrusted("%s %s has mode %04o: others may connect to it", what, path, perm)
	}
	return nil
}
