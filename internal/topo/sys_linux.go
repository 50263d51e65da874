package topo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/vishvananda/netns"
	"tunnel-agent/internal/ethfeat"

	"tunnel-agent/internal/nsutil"
)

// sysctl is one value to write below /proc/sys.
type sysctl struct {
	key      string // path below /proc/sys, e.g. "net/ipv4/ip_forward"
	val      string
	optional bool // absent keys (no IPv6 in the kernel) are skipped
}

// writeSysctls writes the values from a thread inside namespace h:
// /proc/sys/net resolves to the namespace of the thread that opens it.
func writeSysctls(h netns.NsHandle, kv []sysctl) error {
	return nsutil.Do(h, func() error {
		for _, s := range kv {
			err := os.WriteFile("/proc/sys/"+s.key, []byte(s.val), 0)
			if err != nil && !(s.optional && errors.Is(err, fs.ErrNotExist)) {
				return fmt.Errorf("set %s=%s: %w", strings.ReplaceAll(s.key, "/", "."), s.val, err)
			}
		}
		return nil
	})
}

// readSysctl reads a value below /proc/sys inside namespace h.
func readSysctl(h netns.NsHandle, key string) (string, error) {
	var v string
	err := nsutil.Do(h, func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// isChecksumFeature reports whether a kernel feature name is one that
// `ethtool --offload DEV rx off tx off` switches.
func isChecksumFeature(name string) bool {
	return name == "rx-checksum" || strings.HasPrefix(name, "tx-checksum-")
}

// checksumOffloadsOff switches a link's rx and tx checksum offloads off
// (the kernel also drops the features that depend on them, e.g. TSO),
// through an ethtool socket opened inside namespace h.
func checksumOffloadsOff(h netns.NsHandle, link string) error {
	return nsutil.Do(h, func() error {
		et, err := ethfeat.Open()
		if err != nil {
			return fmt.Errorf("ethtool socket: %w", err)
		}
		defer et.Close()
		st, err := et.Features(link)
		if err != nil {
			return fmt.Errorf("read features: %w", err)
		}
		want := map[string]bool{}
		for name, s := range st {
			if isChecksumFeature(name) && s.Available {
				want[name] = false
			}
		}
		if len(want) == 0 {
			return nil
		}
		return et.Change(link, want)
	})
}

// ChecksumOffloads reports which rx/tx checksum features of a link in one
// of the topology's namespaces are active (for tests and diagnostics).
func (t *Topology) ChecksumOffloads(ns, link string) (map[string]bool, error) {
	out := map[string]bool{}
	err := t.Do(ns, func() error {
		et, err := ethfeat.Open()
		if err != nil {
			return err
		}
		defer et.Close()
		st, err := et.Features(link)
		if err != nil {
			return err
		}
		for name, s := range st {
			if isChecksumFeature(name) {
				out[name] = s.Active
			}
		}
		return nil
	})
	return out, err
}

// Sysctl reads a value below /proc/sys (e.g. "net/ipv4/ip_forward")
// inside one of the topology's namespaces.
func (t *Topology) Sysctl(ns, key string) (string, error) {
	h := t.Handle(ns)
	if !h.IsOpen() {
		return "", fmt.Errorf("topology %s: no namespace %q", t.Prefix, ns)
	}
	return readSysctl(h, key)
}
