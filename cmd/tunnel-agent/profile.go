package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the whole run to the file named by
// $TUNNEL_AGENT_CPUPROFILE, when it is set (for bench/run.sh --profile and
// `go tool pprof`); off by default. It returns the function that stops it.
func startProfile() func() {
	path := os.Getenv("TUNNEL_AGENT_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tunnel-agent: CPU profile %s: %v\n", path, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
