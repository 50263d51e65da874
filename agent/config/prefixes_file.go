package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// tunnel.peers[].prefixes_file names a file of further prefixes of the
// peer, one a line (for a hub whose peers own more prefixes than a site
// file of MaxFileSize can list):
//
//	# site 17
//	10.17.0.0/16
//	fd00:17::/48   # its IPv6 LAN
//
// Text from '#' to the end of a line is a comment; blank lines are
// ignored. Every prefix is checked as the ones in `prefixes` are, and an
// error names the file and line. The file is read again on every reload.

// maxPrefixesFileSize bounds how much of a prefixes file is read: room
// for 100,000 IPv6 prefixes with comments.
const maxPrefixesFileSize = 16 << 20

// maxLineErrors is how many bad lines of a prefixes file are reported one
// by one; the rest are counted in one more line. Half the file's own
// error list (maxListedErrors), so that a bad prefixes file leaves room
// for the site file's other problems.
const maxLineErrors = maxListedErrors / 2

// prefixesFile reads the prefixes_file field at path: the file's resolved
// name, its prefixes and the line each is on.
func (c converter) prefixesFile(path string, n *yaml.Node) (name string, out []netip.Prefix, lines []int) {
	s, ok := c.scalar(path, n)
	if !ok {
		return "", nil, nil
	}
	if s == "" {
		c.ps.addf(path, n, "must not be empty")
		return "", nil, nil
	}
	name = s
	if !filepath.IsAbs(name) {
		name = filepath.Join(c.dir, name)
	}
	data, err := readPrefixesFile(name)
	if err != nil {
		c.ps.add(path, n, err)
		return name, nil, nil
	}
	bad, firstUnreported := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxPrefixesFileSize)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := parseNetPrefix(text)
		if err != nil {
			if bad++; bad <= maxLineErrors {
				c.ps.addIn(path, name, line, err)
			} else if firstUnreported == 0 {
				firstUnreported = line
			}
			continue
		}
		out, lines = append(out, p), append(lines, line)
	}
	switch {
	case bad > maxLineErrors:
		c.ps.addIn(path, name, firstUnreported, fmt.Errorf("%d more lines from here on are not prefixes", bad-maxLineErrors))
	case bad == 0 && len(out) == 0:
		c.ps.addf(path, n, "%s lists no prefixes", name)
	}
	return name, out, lines
}

// readPrefixesFile reads a prefixes file. It must be a regular file
// (checked before it is opened, so that no device or FIFO is ever opened,
// and again on the open file) of at most maxPrefixesFileSize bytes.
func readPrefixesFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read the prefixes file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("prefixes file %s is not a regular file", name)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read the prefixes file: %w", err)
	}
	defer f.Close()
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		return nil, fmt.Errorf("prefixes file %s changed while it was opened", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPrefixesFileSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot read the prefixes file %s: %w", name, pathCause(err))
	case len(data) > maxPrefixesFileSize:
		return nil, fmt.Errorf("prefixes file %s is larger than %d bytes", name, maxPrefixesFileSize)
	case bytes.IndexByte(data, 0) >= 0:
		return nil, errors.New("prefixes file " + name + " is not text")
	}
	return data, nil
}
