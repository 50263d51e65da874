package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// siteLock is an exclusive flock on <state-dir>/<site>.lock, held for as
// long as an agent (or a `down`) works on the site. The kernel drops it
// when the process dies, so a stale lock file never blocks anyone.
type siteLock struct{ f *os.File }

func lockSite(stateDir, site string) (*siteLock, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(stateDir, site+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
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

func journalPath(stateDir, site string) string {
	return filepath.Join(stateDir, site+".json")
}
