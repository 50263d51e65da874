package ebpf

import (
	"os"
	"testing"
)

// requireBPF skips the test unless the process may load BPF programs.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs (run as root, as CI does)")
	}
}

// load loads a dataplane for a test and closes it at the end.
func load(t testing.TB, cfg Config) *Dataplane {
	t.Helper()
	requireBPF(t)
	d, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestReasonsMatchProgram(t *testing.T) {
	d := load(t, Config{ListenPort: 5000})
	info, err := d.objs.Counters.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxEntries != uint32(numReasons) {
		t.Fatalf("counters map has %d entries, Go knows %d reasons: update reasons.go", info.MaxEntries, numReasons)
	}
	for r := range numReasons {
		if reasonNames[r] == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

func TestProbe(t *testing.T) {
	requireBPF(t)
	s, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
}
