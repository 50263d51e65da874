// Command tunnel-agent turns a Linux host into one end of a site-to-site
// L3 tunnel without a tunnel interface. See README.md and docs/.
package main

import (
	"os"

	"tunnel-agent/agent"
)

func main() {
	stop := startProfile()
	code := agent.Main(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
