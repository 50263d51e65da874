package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// aliasBomb is the file of the report: one 100 KB anchor used by 3,000
// aliases (109 KB in all), which made `check` print 300 MB of errors.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("site: s\nlan: {interface: eth0}\ntunnel:\n  listen: 0.0.0.0:50000\n  peers:\n    - name: p\n")
	b.WriteString("      prefixes: [&big \"" + strings.Repeat("x", 100<<10) + "\"")
	b.WriteString(strings.Repeat(", *big", 3000) + "]\n")
	return b.String()
}

func TestAliasesRefused(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantFieldErr
	}{
		{"alias of a prefix", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[&n 10.0.0.0/24]\n  blackhole: [*n]", 1),
			[]wantFieldErr{{8, "tunnel.blackhole[0]", "YAML aliases (*n) are not allowed"}}},
		{"merge key", "base: &b {interface: eth0}\n" + strings.Replace(cfgMinimal, "lan: {interface: eth0}", "lan: {<<: *b}", 1),
			[]wantFieldErr{{3, "lan.<<", "YAML aliases (*b) are not allowed"}}},
		{"many", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[&n 10.0.0.0/24, *n, *n]", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[1]", "(2 aliases in the file, the first here)"}}},
		{"anchor without alias", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[&n 10.0.0.0/24]", 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("site.yaml", []byte(tt.yaml), cfgHost)
			checkConfigErrors(t, err, tt.want)
		})
	}
}

// TestAliasBombBounded checks that the report's file costs little: one
// short error, and a few times the file's size in memory.
func TestAliasBombBounded(t *testing.T) {
	data := []byte(aliasBomb())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Parse("bomb.yaml", data, cfgHost)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "3000 aliases") {
		t.Fatalf("Parse = %v, want aliases refused", err)
	}
	if n := len(err.Error()); n > 512 {
		t.Errorf("error is %d bytes, want a short one:\n%.600s", n, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("parsing a %d KB file allocated %d MB", len(data)>>10, alloc>>20)
	}
}

func TestErrorsCapped(t *testing.T) {
	bad := make([]string, 100)
	for i := range bad {
		bad[i] = fmt.Sprintf("10.0.%d.1/24", i)
	}
	yaml := strings.Replace(cfgMinimal, "[10.0.0.0/24]", "["+strings.Join(bad, ", ")+"]", 1)
	_, err := Parse("site.yaml", []byte(yaml), cfgHost)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Errors) != maxListedErrors+1 {
		t.Fatalf("got %d errors, want %d and one that counts the rest:\n%v", len(ce.Errors), maxListedErrors, err)
	}
	if last := ce.Errors[maxListedErrors].Error(); last != "site.yaml: and 80 more problems (fix the ones above first)" {
		t.Errorf("last error = %q", last)
	}
}

func TestLongValuesClipped(t *testing.T) {
	long := strings.Repeat("é", 200) // cut on a character boundary
	_, err := Parse("site.yaml", []byte(strings.Replace(cfgMinimal, "site: s", "site: "+long, 1)), cfgHost)
	want := `site.yaml:1:7: site: invalid name "` + strings.Repeat("é", 32) + `"... (400 bytes): use 1 to 64`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error:\n got %v\nwant %s...", err, want)
	}
	if got := clipQuoted(`short "abc" stays`); got != `short "abc" stays` {
		t.Errorf("clipQuoted changed a short message: %q", got)
	}
}

func TestInterfaceNames(t *testing.T) {
	for _, name := range []string{"eth0", "veth-a_b", "eth0.100", "br+x", "a=b"} {
		if err := checkIfName(name); err != nil {
			t.Errorf("checkIfName(%q) = %v, want ok", name, err)
		}
	}
	for _, name := range []string{"cv%d", "%d", "a/b", "a:1", "a b", "a\tb", ".", "..", "all", "default",
		"abcdefghijklmnop", "é", "a\xa0b", "a\x7fb", "a\x00"} {
		if err := checkIfName(name); err == nil {
			t.Errorf("checkIfName(%q) = nil, want refused", name)
		}
	}
	yaml := strings.Replace(cfgNSBase, "{host: veth0, peer: veth1}", `{host: "cv%d", peer: veth1}`, 1)
	yaml = strings.Replace(yaml, "{interface: veth0}", `{interface: "cv%d"}`, 1)
	checkConfigErrors(t, loadConfigString(t, yaml, cfgLinks{}), []wantFieldErr{
		{2, "lan.interface", `invalid interface name "cv%d"`},
		{5, "namespaces[0].veth.host", `invalid interface name "cv%d"`},
	})
}
