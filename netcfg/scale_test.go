package netcfg_test

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"

	. "tunnel-agent/netcfg"
)

// hubDesired is a hub's host configuration: the VPS setup of vpsDesired
// plus n blackhole routes, IPv4 /24s and (every fourth) IPv6 /48s.
func hubDesired(n int) Desired {
	d := vpsDesired("ns1")
	d.Routes = d.Routes[:1]
	for i := range n {
		var p netip.Prefix
		if i%4 == 3 {
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, byte(i >> 16), byte(i >> 8), byte(i)}), 48)
		} else {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		}
		d.Routes = append(d.Routes, Route{Dst: p, Blackhole: true})
	}
	return d
}

// TestHubScale applies, checks and reverts a hub's configuration of 5,000
// routes on the fake host: each pass lists each table once, and the
// journal is written twice per batch, not once per entry.
func TestHubScale(t *testing.T) {
	const n = 5000
	h := vpsHost(t)
	before := h.Dump()
	d := hubDesired(n)
	j := NewJournal(filepath.Join(fastTempDir(t), "hub.json"), "hub")
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatal(err)
	}
	if got := len(j.Entries); got != len(Entries(d)) {
		t.Fatalf("%d entries journaled, want %d", got, len(Entries(d)))
	}
	if j.Saves() > 30 {
		t.Errorf("the journal was written %d times for %d entries; want twice per batch", j.Saves(), len(j.Entries))
	}
	reads := func() map[string]int {
		m := map[string]int{}
		for _, c := range h.Calls() {
			if !c.Mutating {
				m[c.Op]++
			}
		}
		return m
	}
	h.Must(t)
	Preview(h, d)
	if r := reads(); r["Routes"] > 3 {
		t.Errorf("Preview listed route tables %d times (%v), want once per namespace and family", r["Routes"], r)
	}
	h.Must(t)
	if evs := NewWatcher(h, d, WatchOptions{Journal: j}).Check(); len(evs) != 0 {
		t.Errorf("events: %s", actions(evs))
	}
	if r := reads(); r["Routes"] > 3 {
		t.Errorf("a watcher pass listed route tables %d times (%v)", r["Routes"], r)
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after Revert", h, before)
}

// The benchmarks run the plan of a hub with 100,000 routes against the
// fake host: what netcfg itself costs, without the kernel.

const benchRoutes = 100000

// BenchmarkPlan100k: Preview (what `check` computes) of 100,000 routes.
func BenchmarkPlan100k(b *testing.B) {
	h := vpsHost(b)
	d := hubDesired(benchRoutes)
	for b.Loop() {
		if plan := Preview(h, d); len(plan) != len(Entries(d)) {
			b.Fatal(len(plan))
		}
	}
}

// BenchmarkApply100k: Apply of 100,000 routes to a fresh host, journal
// on /dev/shm (each iteration reverts, untimed).
func BenchmarkApply100k(b *testing.B) {
	d := hubDesired(benchRoutes)
	dir := fastTempDir(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		h := vpsHost(b)
		j := NewJournal(filepath.Join(dir, strconv.Itoa(i)+".json"), "hub")
		b.StartTimer()
		if err := Apply(h, d, j, discard); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := j.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkWatchCheck100k: one watcher pass over 100,000 routes with
// nothing to repair (what a LAN link flap costs).
func BenchmarkWatchCheck100k(b *testing.B) {
	h := vpsHost(b)
	d := hubDesired(benchRoutes)
	j := NewJournal(filepath.Join(fastTempDir(b), "hub.json"), "hub")
	if err := Apply(h, d, j, discard); err != nil {
		b.Fatal(err)
	}
	w := NewWatcher(h, d, WatchOptions{Journal: j})
	for b.Loop() {
		if evs := w.Check(); len(evs) != 0 {
			b.Fatal(actions(evs))
		}
	}
}
