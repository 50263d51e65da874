package netcfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tunnel-agent/internal/fstrust"
)

// JournalVersion is the format version written into every journal.
const JournalVersion = 1

// Journal is the on-disk record of the changes one site made, in order.
type Journal struct {
	Version int       `json:"version"`
	Site    string    `json:"site"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// NetNS is the network namespace the changes were made in (the
	// Host's NS ""); nil in a journal written before it was recorded.
	NetNS   *NetNSID `json:"netns,omitempty"`
	Entries []Entry  `json:"entries"`

	path  string
	saves int // Save calls (tests: the journal is written per batch)
}

// NewJournal returns an empty journal that will be saved at path.
func NewJournal(path, site string) *Journal {
	return &Journal{Version: JournalVersion, Site: site, PID: os.Getpid(), Started: time.Now().UTC(), path: path}
}

// Path is where the journal is saved.
func (j *Journal) Path() string { return j.path }

// LoadJournal reads the journal at path. A missing file returns
// (nil, nil): nothing to revert. A journal says what a revert deletes,
// so one that is not a regular file owned by this user, or that group
// or others may write, is refused (fstrust), as is a symbolic link.
func LoadJournal(path string) (*Journal, error) {
	f, err := fstrust.OpenFile("journal", path, os.O_RDONLY, 0, 0o022)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, fstrust.ErrUntrusted) {
		return nil, fmt.Errorf("%w; a journal decides what a revert removes, so only a private one written by this user is used: find out who wrote it, then remove it", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	j := &Journal{path: path}
	if err := json.Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("parse journal %s: %w", path, err)
	}
	if j.Version != JournalVersion {
		return nil, fmt.Errorf("journal %s has version %d, this agent reads %d", path, j.Version, JournalVersion)
	}
	return j, nil
}

// Save writes the journal atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
func (j *Journal) Save() error {
	j.saves++
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	if err := writeAtomic(j.path, b); err != nil {
		return fmt.Errorf("write journal %s: %w", j.path, err)
	}
	return nil
}

// Remove deletes the journal file; a missing file is not an error.
func (j *Journal) Remove() error {
	if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove journal: %w", err)
	}
	return nil
}

// tempPrefix starts the names of writeAtomic's temporary files for path.
func tempPrefix(path string) string { return "." + filepath.Base(path) + "." }

// RemoveTemporaries removes the temporary files a Save of the journal at
// path left behind when the process was killed mid-write (the journal
// itself is whole: the rename is atomic). Call it only while no one else
// saves that journal (under the site's lock). It returns the paths
// removed.
func RemoveTemporaries(path string) ([]string, error) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var removed []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tempPrefix(path)) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("remove temporary journal %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
