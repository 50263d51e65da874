package netcfg_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	. "tunnel-agent/netcfg"
)

// sampleEntries has one entry of every kind, with every Prior field and
// both address families.
func sampleEntries() []Entry {
	return []Entry{
		{Kind: KindNamespace, NS: "ns1", State: Done},
		{Kind: KindVeth, Link: "veth0", Peer: "veth1", PeerNS: "ns1", State: Done},
		{Kind: KindMTU, NS: "ns1", Link: "veth1", MTU: 1420, Prior: Prior{MTU: 1500}, State: Done},
		{Kind: KindFeatures, Link: "veth0", Features: map[string]bool{"rx-checksum": false, "rx-gro": true},
			Prior: Prior{Features: map[string]bool{"rx-checksum": true, "rx-gro": false}}, State: Pending},
		{Kind: KindAddr, Link: "veth0", Prefix: netip.MustParsePrefix("fd00:1::1/64"), State: Done},
		{Kind: KindAddr, Link: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/24"), Prior: Prior{Exists: true}, State: Unchanged},
		{Kind: KindUp, Link: "eth0", Prior: Prior{Up: true}, State: Unchanged},
		{Kind: KindRoute, NS: "ns1", Route: &RouteSpec{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("11.11.11.1"), Type: RouteUnicast, Protocol: RouteProtocol},
			Prior: Prior{Route: &RouteSpec{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("192.0.2.1"), Dev: "eth0",
				Type: RouteUnicast, Protocol: 4, Scope: 0, Src: netip.MustParseAddr("192.0.2.10")}}, State: Done},
		{Kind: KindRoute, Route: &RouteSpec{Dst: netip.MustParsePrefix("2001:db8::/32"), Type: RouteBlackhole, Protocol: RouteProtocol},
			Prior: Prior{Route: &RouteSpec{Dst: netip.MustParsePrefix("2001:db8::/32"), Gw: netip.MustParseAddr("fe80::1"), Dev: "eth0", Type: RouteUnicast, Protocol: 3, Scope: 0}},
			State: Done},
	}
}

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "site.json") // directory made on Save
	j := NewJournal(path, "site-a")
	j.Entries = sampleEntries()
	if err := j.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := LoadJournal(path)
	if err != nil || got == nil {
		t.Fatalf("LoadJournal: %v, %v", got, err)
	}
	if got.Version != JournalVersion || got.Site != "site-a" || got.PID != os.Getpid() || got.Path() != path {
		t.Errorf("header = %d %q %d %q", got.Version, got.Site, got.PID, got.Path())
	}
	if !got.Started.Equal(j.Started) {
		t.Errorf("Started = %v, want %v", got.Started, j.Started)
	}
	if !reflect.DeepEqual(got.Entries, j.Entries) {
		gb, _ := json.MarshalIndent(got.Entries, "", " ")
		wb, _ := json.MarshalIndent(j.Entries, "", " ")
		t.Errorf("entries after the round trip:\n%s\nwant:\n%s", gb, wb)
	}
	// What Revert needs survives: the strings it prints and the priors.
	for i, e := range got.Entries {
		if e.String() != j.Entries[i].String() {
			t.Errorf("entry %d reads %q, want %q", i, e.String(), j.Entries[i].String())
		}
	}

	// Saving again replaces the file; nothing else is left in the
	// directory, and the file is private.
	j.Entries = j.Entries[:2]
	if err := j.Save(); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	files, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name() != "site.json" {
		var names []string
		for _, f := range files {
			names = append(names, f.Name())
		}
		t.Errorf("directory holds %v, want only site.json (no temporary files)", names)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("journal mode %v, want 0600: it records the host's configuration", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("journal directory mode %v, want no access for group and others", perm)
	}
	if got, err := LoadJournal(path); err != nil || len(got.Entries) != 2 {
		t.Errorf("after the second Save: %v entries, %v", got, err)
	}

	if err := j.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := j.Remove(); err != nil {
		t.Errorf("Remove of a removed journal: %v", err)
	}
}

// TestJournalFormat pins the on-disk names: a journal written by one
// version of the agent is reverted by the next.
func TestJournalFormat(t *testing.T) {
	e := sampleEntries()[7]
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kind":"route","ns":"ns1","route":{"dst":"0.0.0.0/0","gw":"11.11.11.1","type":1,"protocol":227,"scope":0,"metric":0},` +
		`"prior":{"route":{"dst":"0.0.0.0/0","gw":"192.0.2.1","dev":"eth0","type":1,"protocol":4,"scope":0,"src":"192.0.2.10","metric":0}},"state":"done"}`
	if string(b) != want {
		t.Errorf("entry encodes as\n%s\nwant\n%s", b, want)
	}
}

// TestJournalWithoutMetric: a journal written before routes had a metric
// (same JournalVersion) reads with the family's default metric, the one
// the kernel gave those routes: 0 for IPv4, 1024 for IPv6.
func TestJournalWithoutMetric(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.json")
	const old = `{"version":1,"site":"s","pid":1,"started":"2026-01-01T00:00:00Z","entries":[
	  {"kind":"route","route":{"dst":"fd00:202::/48","type":6,"protocol":227,"scope":0},"prior":{},"state":"done"},
	  {"kind":"route","route":{"dst":"10.9.0.0/24","type":6,"protocol":227,"scope":0},
	   "prior":{"route":{"dst":"10.9.0.0/24","gw":"192.0.2.1","type":1,"protocol":4,"scope":0}},"state":"done"},
	  {"kind":"route","route":{"dst":"fd00:203::/48","type":6,"protocol":227,"scope":0,"metric":500},"prior":{},"state":"done"}]}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := LoadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1024, 0, 500} {
		if got := j.Entries[i].Route.Metric; got != want {
			t.Errorf("entry %d: metric %d, want %d", i, got, want)
		}
	}
	if p := j.Entries[1].Prior.Route; p == nil || p.Metric != 0 {
		t.Errorf("prior route of entry 2: %+v, want metric 0", p)
	}
}

func TestLoadJournalErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr []string // substrings; none: want (nil, nil)
	}{
		{"missing", filepath.Join(dir, "missing.json"), nil},
		{"garbage", write("garbage.json", "{not json"), []string{"parse journal", filepath.Join(dir, "garbage.json")}},
		{"empty", write("empty.json", ""), []string{"parse journal", filepath.Join(dir, "empty.json")}},
		{"wrong version", write("v2.json", `{"version":2,"site":"s","entries":[]}`), []string{"version 2", filepath.Join(dir, "v2.json")}},
		{"no version", write("v0.json", `{"site":"s","entries":[]}`), []string{"version 0"}},
		{"directory", dir, []string{"not a regular file", dir}},
		{"symlink", symlink(t, write("real.json", `{"version":1,"site":"s","entries":[]}`), filepath.Join(dir, "link.json")),
			[]string{"symbolic link", filepath.Join(dir, "link.json")}},
		{"group-writable", chmod(t, write("gw.json", `{"version":1,"site":"s","entries":[]}`), 0o620),
			[]string{"mode 0620", "may write", "who wrote it"}},
		{"fifo", fifo(t, filepath.Join(dir, "fifo.json")), []string{"not a regular file (a FIFO)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := LoadJournal(tt.path)
			if tt.wantErr == nil {
				if j != nil || err != nil {
					t.Errorf("LoadJournal = %v, %v; want nil, nil", j, err)
				}
				return
			}
			if err == nil || j != nil {
				t.Fatalf("LoadJournal = %v, %v; want an error", j, err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestJournalSaveError(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(blocker, "site.json")
	err := NewJournal(path, "s").Save()
	if err == nil || !strings.Contains(err.Error(), "write journal "+path) {
		t.Errorf("Save under a file: %v, want an error naming %s", err, path)
	}
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

func chmod(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func fifo(t *testing.T, path string) string {
	t.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadJournalOfAnotherUser is the reproduced attack: a journal
// planted by nobody made root's `down` delete an unrelated namespace.
func TestLoadJournalOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the journal to another user")
	}
	path := filepath.Join(t.TempDir(), "site.json")
	j := NewJournal(path, "site")
	j.Entries = sampleEntries()
	if err := j.Save(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	got, err := LoadJournal(path)
	if got != nil || err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("LoadJournal of nobody's journal = %v, %v; want a refusal naming the owner", got, err)
	}
}

// TestRemoveTemporaries: the temporary files a killed Save leaves are
// removed; the journal and other sites' files stay.
func TestRemoveTemporaries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.json")
	keep := []string{"site.json", "site.lock", "other.json", ".other.json.123", "site.json.bak"}
	drop := []string{".site.json.4242", ".site.json.99"}
	for _, n := range append(keep, drop...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveTemporaries(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(drop) {
		t.Errorf("removed %v, want %v", removed, drop)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	slices.Sort(keep)
	if !slices.Equal(left, keep) {
		t.Errorf("left %v, want %v", left, keep)
	}
	if r, err := RemoveTemporaries(filepath.Join(dir, "missing", "x.json")); err != nil || len(r) != 0 {
		t.Errorf("missing directory: %v, %v", r, err)
	}
}
