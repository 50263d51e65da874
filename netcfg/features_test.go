package netcfg_test

import (
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// devFeatures is what Host.Features reports for a fresh link of the
// fake's type typ ("veth", "device", "loopback").
func devFeatures(typ string) map[string]FeatureInfo { return netcfgtest.DeviceFeatures(typ) }

func TestExpandFeatures(t *testing.T) {
	veth := devFeatures("veth")
	tests := []struct {
		name    string
		dev     map[string]FeatureInfo
		want    map[string]bool
		out     map[string]bool
		wantErr string
	}{
		{name: "rx", dev: veth, want: map[string]bool{"rx": false}, out: map[string]bool{"rx-checksum": false}},
		{
			// The fixed tx-checksum-ipv4, -ipv6 and -fcoe-crc are left out.
			name: "tx", dev: veth, want: map[string]bool{"tx": false},
			out: map[string]bool{"tx-checksum-ip-generic": false, "tx-checksum-sctp": false},
		},
		{
			name: "tso", dev: veth, want: map[string]bool{"tso": true},
			out: map[string]bool{"tx-tcp-segmentation": true, "tx-tcp-ecn-segmentation": true,
				"tx-tcp-mangleid-segmentation": true, "tx-tcp6-segmentation": true},
		},
		{
			name: "sg", dev: veth, want: map[string]bool{"sg": false},
			out: map[string]bool{"tx-scatter-gather": false, "tx-scatter-gather-fraglist": false},
		},
		{name: "gro", dev: veth, want: map[string]bool{"gro": true}, out: map[string]bool{"rx-gro": true}},
		{
			// On a NIC the changeable TX checksums are others.
			name: "tx on a NIC", dev: devFeatures("device"), want: map[string]bool{"tx": false},
			out: map[string]bool{"tx-checksum-ipv4": false, "tx-checksum-ipv6": false},
		},
		{
			// rx-lro is fixed off on a veth: nothing to change, no error
			// (ethtool -K would say "Could not change any device features").
			name: "short name covering only fixed features", dev: veth, want: map[string]bool{"lro": true},
			out: map[string]bool{},
		},
		{
			name: "checksums of lo are fixed", dev: devFeatures("loopback"), want: map[string]bool{"rx": false, "tx": false},
			out: map[string]bool{},
		},
		{
			name: "kernel names pass through", dev: veth,
			want: map[string]bool{"rx-gro": true, "tx-checksum-sctp": false},
			out:  map[string]bool{"rx-gro": true, "tx-checksum-sctp": false},
		},
		{
			// The kernel name is more specific than the short one.
			name: "kernel name overrides short name", dev: veth,
			want: map[string]bool{"tx": false, "tx-checksum-sctp": true},
			out:  map[string]bool{"tx-checksum-ip-generic": false, "tx-checksum-sctp": true},
		},
		{name: "fixed at its value is skipped", dev: veth, want: map[string]bool{"tx-lockless": true}, out: map[string]bool{}},
		{name: "fixed off at its value is skipped", dev: veth, want: map[string]bool{"rx-lro": false}, out: map[string]bool{}},
		{name: "fixed at the other value", dev: veth, want: map[string]bool{"tx-lockless": false}, wantErr: `feature "tx-lockless" is fixed on`},
		{name: "fixed off, asked on", dev: veth, want: map[string]bool{"rx-lro": true}, wantErr: `feature "rx-lro" is fixed off`},
		{name: "unknown kernel name", dev: veth, want: map[string]bool{"rx-nope": true}, wantErr: `device has no feature "rx-nope"`},
		{name: "nothing", dev: veth, want: nil, out: map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ExpandFeatures(tt.want, tt.dev)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("expandFeatures = %v, %v; want error %q", out, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(out, tt.out) {
				t.Errorf("expandFeatures = %v, %v; want %v", out, err, tt.out)
			}
		})
	}
}

func TestIsShortFeature(t *testing.T) {
	for name, want := range map[string]bool{
		"rx": true, "tx": true, "tso": true, "gro": true, "rxhash": true,
		"rx-checksum": false, "tx-checksum-ip-generic": false, "": false, "TX": false,
	} {
		if got := IsShortFeature(name); got != want {
			t.Errorf("IsShortFeature(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestFeaturesRevertRequested: a feature that is requested on but not
// active (TSO while TX checksums are off) is journaled as requested, and
// Revert restores the request, which the kernel then honours again.
func TestFeaturesRevertRequested(t *testing.T) {
	h := vpsHost(t)
	h.Must(t, h.AddVeth("veth0", "veth1", ""), h.SetFeatures("", "veth0", map[string]bool{"tx-checksum-ip-generic": false}))
	before := h.Dump()
	fs, _ := h.Features("", "veth0")
	if fi := fs["tx-tcp-segmentation"]; !fi.Requested || fi.Active {
		t.Fatalf("setup: TSO %+v, want requested and inactive", fi)
	}

	d := Desired{Links: []Link{{Name: "veth0", Features: []Feature{{"tso", false}, {"tx", true}}}}}
	j := newTestJournal(t)
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	e := j.Entries[0]
	wantPrior := map[string]bool{
		"tx-tcp-segmentation": true, "tx-tcp-ecn-segmentation": true, "tx-tcp-mangleid-segmentation": true,
		"tx-tcp6-segmentation": true, "tx-checksum-ip-generic": false,
	}
	if !reflect.DeepEqual(e.Prior.Features, wantPrior) {
		t.Errorf("journaled prior %v, want %v", e.Prior.Features, wantPrior)
	}
	// tx-checksum-sctp was on already: not part of the change.
	if _, ok := e.Features["tx-checksum-sctp"]; ok || len(e.Features) != len(wantPrior) {
		t.Errorf("journaled change %v: want only the features that differ", e.Features)
	}
	fs, _ = h.Features("", "veth0")
	if fi := fs["tx-tcp-segmentation"]; fi.Requested || fi.Active {
		t.Errorf("TSO after Apply %+v, want off", fi)
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	checkDump(t, "after Revert", h, before)
}

// TestFeaturesShortNamesJournaledAsKernelNames: the journal holds the
// kernel names resolved on the device, not the short names asked for.
func TestFeaturesShortNamesJournaledAsKernelNames(t *testing.T) {
	h := netcfgtest.New()
	h.Must(t, h.AddVeth("veth0", "veth1", ""))
	d := Desired{Links: []Link{{Name: "veth0", Features: []Feature{{"rx", false}, {"gro", true}},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}}}}
	j := newTestJournal(t)
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	loaded, err := LoadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	e := loaded.Entries[0]
	if want := map[string]bool{"rx-checksum": false, "rx-gro": true}; !maps.Equal(e.Features, want) {
		t.Errorf("journaled features %v, want %v", e.Features, want)
	}
	if want := map[string]bool{"rx-checksum": true, "rx-gro": false}; !maps.Equal(e.Prior.Features, want) {
		t.Errorf("journaled prior %v, want %v", e.Prior.Features, want)
	}
}
