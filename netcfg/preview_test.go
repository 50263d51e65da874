package netcfg_test

import (
	"strings"
	"testing"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// TestPreviewEmptyHost: on a host without any of it, every step is a
// change, and targets an earlier step would create read as absent.
func TestPreviewEmptyHost(t *testing.T) {
	h := netcfgtest.New()
	before := h.Dump()
	plan := Preview(h, vpsDesired("ns1"))
	const want = `  1. create namespace ns1
  2. create veth pair veth0 <-> veth1 (veth1 in ns1)
  3. set MTU of veth0 to 1420  (absent -> 1420)
  4. set features of veth0: rx off, tx off
  5. add address 11.11.11.1/24 to veth0
  6. bring up veth0  (absent -> up)
  7. set MTU of veth1 in ns1 to 1420  (absent -> 1420)
  8. set features of veth1 in ns1: rx off, tx off
  9. add address 11.11.11.100/24 to veth1 in ns1
 10. bring up veth1 in ns1  (absent -> up)
 11. bring up lo in ns1  (absent -> up)
 12. add route default via 11.11.11.1 in ns1
 13. add route blackhole 192.168.111.0/30
`
	if got := FormatPlan(plan); got != want {
		t.Errorf("FormatPlan:\n%s\nwant:\n%s", got, want)
	}
	for i, c := range plan {
		if c.Step != i+1 || c.Unchanged || c.Error != "" {
			t.Errorf("step %d: %+v", i+1, c)
		}
	}
	if c := plan[0]; c.From != "absent" || c.To != "present" {
		t.Errorf("namespace: %q -> %q, want absent -> present", c.From, c.To)
	}
	if c := plan[3]; c.From != "absent" || c.To != "rx off, tx off" {
		t.Errorf("features of a link still to be created: %q -> %q", c.From, c.To)
	}
	if calls := h.MutatingCalls(); len(calls) != 0 {
		t.Errorf("Preview changed the host: %v", calls)
	}
	checkDump(t, "after Preview", h, before)
}

// TestPreviewPartlyThere: current values are read, and what is already as
// wanted is flagged unchanged.
func TestPreviewPartlyThere(t *testing.T) {
	h := netcfgtest.New()
	h.Must(t,
		h.CreateNamespace("ns1"),
		h.SetUp("ns1", "lo", true),
		h.AddVeth("veth0", "veth1", "ns1"),
		h.SetMTU("ns1", "veth1", 1420),
		h.SetFeatures("ns1", "veth1", map[string]bool{"rx-checksum": false, "tx-checksum-ip-generic": false, "tx-checksum-sctp": false}),
	)
	before := h.Dump()
	plan := Preview(h, vpsDesired("ns1"))
	tests := []struct {
		from, to  string
		unchanged bool
	}{
		{"present", "present", true}, // create namespace ns1
		{"present", "present", true}, // create veth pair
		{"1500", "1420", false},      // set MTU of veth0
		{"rx-checksum on, tx-checksum-ip-generic on, tx-checksum-sctp on", "rx-checksum off, tx-checksum-ip-generic off, tx-checksum-sctp off", false},
		{"absent", "present", false}, // add address to veth0
		{"down", "up", false},        // bring up veth0
		{"1420", "1420", true},       // set MTU of veth1
		{"as wanted", "", true},      // set features of veth1
		{"absent", "present", false}, // add address to veth1
		{"down", "up", false},        // bring up veth1
		{"up", "up", true},           // bring up lo
		{"absent", "default via 11.11.11.1", false},
		{"absent", "blackhole 192.168.111.0/30", false},
	}
	if len(plan) != len(tests) {
		t.Fatalf("%d steps, want %d", len(plan), len(tests))
	}
	for i, tt := range tests {
		c := plan[i]
		if c.From != tt.from || c.To != tt.to || c.Unchanged != tt.unchanged || c.Error != "" {
			t.Errorf("step %d %q: %q -> %q unchanged=%v error=%q; want %q -> %q unchanged=%v",
				c.Step, c.Action, c.From, c.To, c.Unchanged, c.Error, tt.from, tt.to, tt.unchanged)
		}
	}
	text := FormatPlan(plan)
	for _, line := range []string{
		"  1. create namespace ns1  (already so: left as found)\n",
		"  3. set MTU of veth0 to 1420  (1500 -> 1420)\n",
		"  4. set features of veth0: rx off, tx off  (rx-checksum on, tx-checksum-ip-generic on, tx-checksum-sctp on -> rx-checksum off, tx-checksum-ip-generic off, tx-checksum-sctp off)\n",
		"  5. add address 11.11.11.1/24 to veth0\n",
		"  6. bring up veth0  (down -> up)\n",
		"  8. set features of veth1 in ns1: rx off, tx off  (already so: left as found)\n",
		" 11. bring up lo in ns1  (already so: left as found)\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("plan lacks %q:\n%s", line, text)
		}
	}
	if calls := h.MutatingCalls(); len(calls) != 0 {
		t.Errorf("Preview changed the host: %v", calls)
	}
	checkDump(t, "after Preview", h, before)
}

// TestPreviewReadError: a value that cannot be read is shown as such, and
// the rest of the plan is still computed.
func TestPreviewReadError(t *testing.T) {
	h := netcfgtest.New()
	h.Must(t, h.AddVeth("veth0", "veth1", ""))
	h.FailIf(func(c netcfgtest.Call) bool { return c.Op == "Addrs" })
	d := Desired{Links: []Link{{Name: "veth0", MTU: 1400, Features: []Feature{{"tx-lockless", false}},
		Addrs: vpsDesired("x").Links[0].Addrs}}}
	plan := Preview(h, d)
	if len(plan) != 3 {
		t.Fatalf("plan: %+v", plan)
	}
	if c := plan[0]; c.From != "1500" || c.To != "1400" || c.Error != "" {
		t.Errorf("MTU step: %+v", c)
	}
	if c := plan[1]; c.From != "?" || !strings.Contains(c.Error, `feature "tx-lockless" is fixed on`) {
		t.Errorf("features step: %+v", c)
	}
	if c := plan[2]; c.From != "?" || !strings.Contains(c.Error, netcfgtest.ErrInjected.Error()) {
		t.Errorf("address step: %+v", c)
	}
	text := FormatPlan(plan)
	if want := `  2. set features of veth0: tx-lockless off  [cannot read current value: feature "tx-lockless" is fixed on on this device]`; !strings.Contains(text, want+"\n") {
		t.Errorf("plan lacks %q:\n%s", want, text)
	}
}

func TestFormatPlanEmpty(t *testing.T) {
	if got := FormatPlan(Preview(netcfgtest.New(), Desired{})); got != "" {
		t.Errorf("plan of nothing: %q", got)
	}
}
