package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeSite writes the site file and other files into a new directory and
// returns the site file's path.
func writeSite(t *testing.T, site string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const sitePrefixesFile = `site: hub
lan: {interface: eth0}
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: a
      prefixes: [10.1.0.0/24]
      prefixes_file: a.txt
    - name: b
      prefixes_file: b.txt
`

func TestPrefixesFile(t *testing.T) {
	path := writeSite(t, sitePrefixesFile, map[string]string{
		"a.txt": "# site a\n\n10.1.1.0/24\n  fd00:a::/48   # its IPv6 LAN\n#10.9.9.0/24\n",
		"b.txt": "10.2.0.0/16\n",
	})
	cfg, err := Load(path, cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Tunnel.Peers[0], cfg.Tunnel.Peers[1]
	if want := cfgPrefixes("10.1.0.0/24", "10.1.1.0/24", "fd00:a::/48"); !slices.Equal(a.Prefixes, want) {
		t.Errorf("peer a prefixes %v, want %v", a.Prefixes, want)
	}
	if a.PrefixesFile != filepath.Join(filepath.Dir(path), "a.txt") {
		t.Errorf("peer a prefixes_file %q, want it next to the site file", a.PrefixesFile)
	}
	if want := cfgPrefixes("10.2.0.0/16"); !slices.Equal(b.Prefixes, want) {
		t.Errorf("peer b prefixes %v, want %v", b.Prefixes, want)
	}
	if want := cfgPrefixes("10.1.0.0/24", "10.1.1.0/24", "fd00:a::/48", "10.2.0.0/16"); !slices.Equal(cfg.Tunnel.Blackhole, want) {
		t.Errorf("default blackholes %v, want every peer prefix %v", cfg.Tunnel.Blackhole, want)
	}

	// A reload reads the file again.
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "b.txt"), []byte("10.2.0.0/16\n10.3.0.0/16\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(path, cfgHost)
	if err != nil || len(cfg.Tunnel.Peers[1].Prefixes) != 2 {
		t.Errorf("after the file changed: %v, %v", cfg, err)
	}
}

// TestPrefixesFileErrors: every problem names the file and line it is on
// (a prefix of a prefixes file, or the field), and prefixes from files are
// checked as inline ones are.
func TestPrefixesFileErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // whole error lines; DIR is the directory
	}{
		{
			name:  "bad lines",
			files: map[string]string{"a.txt": "10.1.1.0/24\n10.1.2.1/24\n\nnonsense # what\n", "b.txt": "10.2.0.0/16\n"},
			want: []string{
				"DIR/a.txt:2: tunnel.peers[0].prefixes_file: 10.1.2.1/24 has host bits set; did you mean 10.1.2.0/24?",
				`DIR/a.txt:4: tunnel.peers[0].prefixes_file: invalid CIDR "nonsense": no '/' (want ADDRESS/LENGTH, e.g. 10.0.0.0/24 or 2001:db8::/64)`,
			},
		},
		{
			name:  "overlaps across files and the site file",
			files: map[string]string{"a.txt": "10.1.1.0/24\n10.2.3.0/24\n", "b.txt": "# b\n10.2.0.0/16\n10.1.0.0/24\n"},
			want: []string{
				`DIR/b.txt:2: tunnel.peers[1].prefixes_file: 10.2.0.0/16 overlaps 10.2.3.0/24 of peer "a" (DIR/a.txt:2); a destination must belong to one peer`,
				`DIR/b.txt:3: tunnel.peers[1].prefixes_file: 10.1.0.0/24 is also a prefix of peer "a" (tunnel.peers[0].prefixes[0]); a destination must belong to one peer`,
			},
		},
		{
			name:  "given twice in one file",
			files: map[string]string{"a.txt": "10.1.0.0/24\n", "b.txt": "10.2.0.0/16\n"},
			want:  []string{"DIR/a.txt:1: tunnel.peers[0].prefixes_file: 10.1.0.0/24 is given twice (also tunnel.peers[0].prefixes[0])"},
		},
		{
			name:  "missing and empty files",
			files: map[string]string{"a.txt": "# nothing yet\n"},
			want: []string{
				"DIR/site.yaml:8:22: tunnel.peers[0].prefixes_file: DIR/a.txt lists no prefixes",
				"DIR/site.yaml:10:22: tunnel.peers[1].prefixes_file: cannot read the prefixes file: stat DIR/b.txt: no such file or directory",
			},
		},
		{
			name:  "not text",
			files: map[string]string{"a.txt": "10.1.1.0/24\x00\n", "b.txt": "10.2.0.0/16\n"},
			want:  []string{"DIR/site.yaml:8:22: tunnel.peers[0].prefixes_file: prefixes file DIR/a.txt is not text"},
		},
		{
			name:  "many bad lines",
			files: map[string]string{"b.txt": "10.2.0.0/16\n", "a.txt": strings.Repeat("x\n", maxLineErrors+5)},
			want: append(slices.Repeat([]string{"bad line"}, maxLineErrors),
				fmt.Sprintf("DIR/a.txt:%d: tunnel.peers[0].prefixes_file: 5 more lines from here on are not prefixes", maxLineErrors+1)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSite(t, sitePrefixesFile, tt.files)
			_, err := Load(path, cfgHost)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want a *Error", err)
			}
			dir := filepath.Dir(path)
			if len(ce.Errors) != len(tt.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(ce.Errors), len(tt.want), err)
			}
			for i, w := range tt.want {
				got := strings.ReplaceAll(ce.Errors[i].Error(), dir, "DIR")
				if w == "bad line" {
					w = fmt.Sprintf(`DIR/a.txt:%d: tunnel.peers[0].prefixes_file: invalid CIDR "x": no '/' (want ADDRESS/LENGTH, e.g. 10.0.0.0/24 or 2001:db8::/64)`, i+1)
				}
				if got != w {
					t.Errorf("error %d:\n got %s\nwant %s", i, got, w)
				}
			}
		})
	}
}

// TestPrefixesFileNotRegular: a FIFO (or a device) is refused before it is
// opened, instead of blocking `check` forever.
func TestPrefixesFileNotRegular(t *testing.T) {
	path := writeSite(t, sitePrefixesFile, map[string]string{"b.txt": "10.2.0.0/16\n"})
	if err := syscall.Mkfifo(filepath.Join(filepath.Dir(path), "a.txt"), 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(path, cfgHost); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "a.txt is not a regular file") {
			t.Errorf("Load with a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load blocked on a FIFO")
	}
}

// TestPrefixesRequired: a peer needs prefixes or a prefixes_file.
func TestPrefixesRequired(t *testing.T) {
	err := loadConfigString(t, strings.Replace(cfgMinimal, "      prefixes: [10.0.0.0/24]\n", "", 1), cfgHost)
	if err == nil || !strings.Contains(err.Error(), "required: at least one prefix, e.g. [192.168.111.0/24] (or a prefixes_file)") {
		t.Errorf("peer without prefixes: %v", err)
	}
}
