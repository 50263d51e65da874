package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"tunnel-agent/internal/fstrust"
	"tunnel-agent/netcfg"
)

// The state directory holds each site's journal, lock and status socket.
// The agent trusts what it finds there (a journal says what `down`
// deletes), so it refuses a directory anyone else could write to, and
// opens its files there without following symbolic links (fstrust).

// stateDir is the state directory (--state-dir). Every path the agent
// uses in it is made here: <site>.json (the journal, and the temporary
// files of its saves: netcfg.RemoveTemporaries), <site>.lock and
// <site>.sock (the status socket); the directory itself is locked too
// (lock).
type stateDir string

// journal is the path of site's journal.
func (d stateDir) journal(site string) string { return d.file(site, journalExt) }

// socket is the path of site's status socket.
func (d stateDir) socket(site string) string { return d.file(site, ".sock") }

func (d stateDir) file(site, ext string) string { return filepath.Join(string(d), site+ext) }

// journalExt ends the name of a journal.
const journalExt = ".json"

// siteFile is a journal found in the directory: its path, and the site
// its name says it is of.
type siteFile struct{ site, path string }

// otherJournals lists the journals in the directory but site's own, with
// the error of reading the directory as it is (fs.ErrNotExist: none yet).
func (d stateDir) otherJournals(site string) ([]siteFile, error) {
	ents, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	var out []siteFile
	for _, e := range ents {
		name := e.Name()
		other, ok := strings.CutSuffix(name, journalExt)
		if !ok || strings.HasPrefix(name, ".") || other == site {
			continue // not a journal (a temporary, a lock, a socket), or site's own
		}
		out = append(out, siteFile{other, filepath.Join(string(d), name)})
	}
	return out, nil
}

// stateDirWhat names the state directory in messages.
const stateDirWhat = "state directory"

// privateFile is the mode bits refused on a journal or lock: group or
// others could change it.
const privateFile = 0o022

// prepare creates the state directory (0700) when it is missing and
// refuses one that others could write to (fstrust.CheckDir).
func (d stateDir) prepare() error {
	return fstrust.EnsureDir(stateDirWhat, string(d))
}

// check refuses a state directory others could write to; a missing one
// is fine (nothing in it to trust).
func (d stateDir) check() error {
	if _, err := os.Lstat(string(d)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fstrust.CheckDir(stateDirWhat, string(d))
}

// siteLock is an exclusive flock on <state-dir>/<site>.lock, held for as
// long as an agent (or a `down`) works on the site. The kernel drops it
// when the process dies, so a stale lock file never blocks anyone.
type siteLock struct{ f *os.File }

func (d stateDir) lockSite(site string) (*siteLock, error) {
	if err := d.prepare(); err != nil {
		return nil, err
	}
	path := d.file(site, ".lock")
	f, err := fstrust.OpenFile("lock", path, os.O_RDWR|os.O_CREATE, 0o600, privateFile)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid := readPID(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another tunnel-agent is running for site %q (pid %s, lock %s); stop it first", site, pid, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &siteLock{f: f}, nil
}

func readPID(f *os.File) string {
	b := make([]byte, 16)
	n, _ := f.ReadAt(b, 0)
	if s := strings.TrimSpace(string(b[:n])); s != "" {
		return s
	}
	return "unknown"
}

// release unlocks; the lock file stays (removing it would race).
func (l *siteLock) release() { l.f.Close() }

// removeTemporaries removes the temporary journal files a killed save of
// site's journal left (netcfg.RemoveTemporaries); `up` and `down` call it
// under the site's lock.
func (d stateDir) removeTemporaries(site string, log *slog.Logger) {
	removed, err := netcfg.RemoveTemporaries(d.journal(site))
	for _, p := range removed {
		log.Info("removed a temporary journal file a killed run left", "file", p)
	}
	if err != nil {
		log.Warn("cannot remove a temporary journal file", "err", err)
	}
}

// dirLock is an exclusive flock on the state directory itself. `up`
// holds it from its last look at the other sites' journals until its own
// journal lists everything it changes (and a reload while it re-checks
// and applies), so that two sites starting at once see each other's
// claims. The kernel drops it when the process dies.
type dirLock struct{ f *os.File }

func (d stateDir) lock(log *slog.Logger) (*dirLock, error) {
	dir := string(d)
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", stateDirWhat, dir, err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		log.Info("another agent is configuring the host; waiting for it to finish", "state_dir", dir)
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s %s: %w", stateDirWhat, dir, err)
	}
	return &dirLock{f: f}, nil
}

// release unlocks; safe to call twice.
func (l *dirLock) release() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
