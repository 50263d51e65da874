package netcfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// JournalVersion is the format version written into every journal.
const JournalVersion = 1

// Journal is the on-disk record of the changes one site made, in order.
type Journal struct {
	Version int       `json:"version"`
	Site    string    `json:"site"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Entries []Entry   `json:"entries"`

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
// (nil, nil): nothing to revert.
func LoadJournal(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
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

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
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
