package netcfg

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// shortFeatures maps the short names that `ethtool -K` takes to the kernel
// feature names they stand for, as glob patterns (from ethtool's
// off_flag_def table; hand-written: no Go library exports it).
var shortFeatures = map[string]string{
	"rx":     "rx-checksum",
	"tx":     "tx-checksum-*",
	"sg":     "tx-scatter-gather*",
	"tso":    "tx-tcp*-segmentation",
	"ufo":    "tx-udp-fragmentation",
	"gso":    "tx-generic-segmentation",
	"gro":    "rx-gro",
	"lro":    "rx-lro",
	"rxvlan": "rx-vlan-hw-parse",
	"txvlan": "tx-vlan-hw-insert",
	"ntuple": "rx-ntuple-filter",
	"rxhash": "rx-hashing",
}

// IsShortFeature reports whether name is one of ethtool's short names.
func IsShortFeature(name string) bool {
	_, ok := shortFeatures[name]
	return ok
}

// expandFeatures resolves short names against the device's features and
// returns kernel feature names. A short name covers the changeable
// features it matches (ethtool does the same); a kernel name must exist
// on the device and be changeable unless it already has the wanted value.
func expandFeatures(want map[string]bool, dev map[string]FeatureInfo) (map[string]bool, error) {
	out := map[string]bool{}
	for _, name := range sortedKeys(want) {
		on := want[name]
		if pat, ok := shortFeatures[name]; ok {
			for kname, fi := range dev {
				if m, _ := path.Match(pat, kname); m && !fi.Fixed {
					out[kname] = on
				}
			}
			continue
		}
		fi, ok := dev[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("device has no feature %q", name)
		case fi.Fixed && fi.Active != on:
			return nil, fmt.Errorf("feature %q is fixed %s on this device", name, onOff(fi.Active))
		case !fi.Fixed:
			out[name] = on
		}
	}
	return out, nil
}

func formatFeatures(f map[string]bool) string {
	parts := make([]string, 0, len(f))
	for _, k := range sortedKeys(f) {
		parts = append(parts, k+" "+onOff(f[k]))
	}
	return strings.Join(parts, ", ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
