// Package agent is tunnel-agent's command line: the mapping of a site
// (package agent/config) onto the host configuration (package netcfg) and
// the dataplane (package dataplane), and the life cycle of `up`, `down`,
// `check` and `reload`, with status and metrics while it runs.
package agent

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure
	ExitUsage   = 2 // usage or configuration error
)

// Version, when set at build time with
// -ldflags "-X tunnel-agent/agent.Version=...", is printed instead of the
// module version from the binary's build information.
var Version string

// DefaultStateDir holds journals, locks and status sockets.
const DefaultStateDir = "/run/tunnel-agent"

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options are the flags shared by the commands.
type options struct {
	config    string
	stateDir  stateDir
	json      bool
	force     bool // down --force: remove by the agent's marks when the journal cannot be used
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
	log       *slog.Logger
	sys       system // the machine: osSystem, or a fake in tests
}

// command is one subcommand: what `tunnel-agent help` lists (summary) and
// what `help CMD` and `CMD -h` print (args, about, flags, example).
type command struct {
	summary string
	args    string // after the command name in the usage line
	about   string // what it does, in a few lines
	example string
	run     func(o *options) error
	flags   func(fs *flag.FlagSet, o *options)
}

var commands = map[string]command{
	"up": {summary: "apply the host configuration, run the tunnel, revert on SIGINT/SIGTERM",
		args: "-c FILE [flags]",
		about: `Applies the site file's host configuration (namespaces, veths, addresses,
routes, MTUs, offloads, blackhole routes) through netlink, journaling the
prior value of everything it changes, then runs the tunnel in the
foreground. While it runs it repairs drift, reloads on SIGHUP or
` + "`tunnel-agent reload`" + `, and answers ` + "`tunnel-agent status`" + `. On SIGINT or
SIGTERM it reverts every change and exits 0. Needs root, or CAP_NET_ADMIN
and CAP_NET_RAW (and CAP_SYS_ADMIN for namespaces:).`,
		example: "sudo tunnel-agent up -c /etc/tunnel-agent/server.yaml", run: runUp, flags: configFlags},
	"demo": {summary: "run both sites of the tutorial in throwaway namespaces and show traffic (root)",
		args: "[flags]",
		about: `Builds the tutorial's two sites (a client behind NAT, a VPS with its LAN in
a namespace) in throwaway network namespaces, starts one agent per site
from a generated site file, pings both ways, sends 64 MiB over TCP, prints
both agents' status, stops them (they revert the host) and removes every
namespace. The last line says whether it all worked. Needs root.`,
		example: "sudo go run ./cmd/tunnel-agent demo", run: runDemo, flags: logFlags},
	"down": {summary: "revert what a killed `up` left behind (a no-op when nothing is left)",
		args: "-c FILE [flags]",
		about: `Reverts the journal <state-dir>/<site>.json that an agent killed before it
could clean up left behind, in reverse order, and removes it. Nothing to
revert is success. The file is read only for the site's name. The journal
must be trusted (owned by this user, not writable by others) and made in
this network namespace (or one still named under /run/netns, where the
revert then happens). With --force, a damaged or missing journal is
replaced by what the site file names: routes with the agent's protocol
227, its veth pairs and its namespaces (when they hold nothing else) are
removed, and what was removed is printed (docs/operations.md).`,
		example: "sudo tunnel-agent down -c /etc/tunnel-agent/server.yaml", run: runDown, flags: downFlags},
	"reload": {summary: "make the running agent re-read its file and apply the difference; waits for its verdict",
		args: "-c FILE [flags]",
		about: `Asks the agent running the site (through its status socket) to re-read its
file and apply only the difference, and waits for the verdict: exit 0 when
the new file runs, 1 when the agent refused it (the reason is printed: a
change that needs a restart, a failed host change), 2 when the file is
invalid (the agent's own errors, checked in its namespace, are printed).
The running configuration stays unless the reload is applied.`,
		example: "sudo tunnel-agent reload -c /etc/tunnel-agent/server.yaml", run: runReload, flags: configFlags},
	"check": {summary: "validate the file and print the plan of host changes; touches nothing",
		args: "-c FILE [flags]",
		about: `Validates the site file (every problem at once, as FILE:LINE:COLUMN: FIELD:
MESSAGE, exit 2) and prints the host changes ` + "`up`" + ` would make, with the
values the host has now. Changes nothing; needs no root.`,
		example: "tunnel-agent check -c configs/server.yaml --json", run: runCheck, flags: checkFlags},
	"status": {summary: "print the running agent's peers and counters",
		args: "-c FILE [flags]",
		about: `Asks the agent running the site for its peers (endpoints, last packet,
packet and byte counters), drops by reason and capture counters.`,
		example: "sudo tunnel-agent status -c /etc/tunnel-agent/server.yaml --json", run: runStatus, flags: checkFlags},
	"version": {summary: "print the version", args: "",
		about:   "Prints the module version and the VCS revision the binary was built from (also --version).",
		example: "tunnel-agent version", run: runVersion, flags: noFlags},
	"genkey": {summary: "print a new WireGuard private key (as `wg genkey`)", args: "",
		about:   "Prints a new private key for tunnel.private_key_file (wireguard mode), as `wg genkey` does.",
		example: "(umask 077; tunnel-agent genkey > /etc/tunnel-agent/site.key)", run: runGenkey, flags: noFlags},
	"genpsk": {summary: "print a new WireGuard preshared key (as `wg genpsk`)", args: "",
		about:   "Prints a new preshared key for tunnel.peers[].preshared_key_file, as `wg genpsk` does.",
		example: "(umask 077; tunnel-agent genpsk > /etc/tunnel-agent/peer.psk)", run: runGenpsk, flags: noFlags},
	"pubkey": {summary: "read a private key on stdin, print its public key (as `wg pubkey`)", args: "< PRIVATE-KEY-FILE",
		about:   "Reads a WireGuard private key (as genkey prints it) on stdin and prints its public key, to give to the peers.",
		example: "tunnel-agent pubkey < /etc/tunnel-agent/site.key", run: runPubkey, flags: noFlags},
}

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == checkChildCommand { // reload_check.go
		return runCheckChild(args[1:], stdout)
	}
	o := &options{stdout: stdout, stderr: stderr, sys: osSystem{}}
	err := dispatch(args, o)
	return report(err, stderr)
}

func dispatch(args []string, o *options) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(o.stderr, usage())
		return usageError{"no command given"}
	case args[0] == "-h" || args[0] == "--help" || (args[0] == "help" && len(args) == 1):
		fmt.Fprint(o.stdout, usage())
		return nil
	case args[0] == "--version" || args[0] == "-version":
		return runVersion(o)
	case args[0] == "help":
		if _, ok := commands[args[1]]; !ok || len(args) > 2 {
			return usageError{fmt.Sprintf("help: unknown command %q (run `tunnel-agent help`)", strings.Join(args[1:], " "))}
		}
		args = []string{args[1], "-h"}
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q (run `tunnel-agent help`)", args[0])}
	}
	fs := flag.NewFlagSet("tunnel-agent "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, below
	fs.Usage = func() {}
	cmd.flags(fs, o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) { // asked for: on stdout, exit 0
			fmt.Fprint(o.stdout, commandHelp(args[0], cmd, fs))
			return nil
		}
		return usageError{fmt.Sprintf("%s: %v (run `tunnel-agent help %s`)", args[0], err, args[0])}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (run `tunnel-agent help %s`)", args[0], fs.Arg(0), args[0])}
	}
	log, err := newLogger(o.logLevel, o.logFormat, o.stderr)
	if err != nil {
		return err
	}
	o.log = log
	return cmd.run(o)
}

// commandHelp is what `help CMD` and `CMD -h` print.
func commandHelp(name string, cmd command, fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: tunnel-agent %s %s\n\n%s\n", name, cmd.args, cmd.about)
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if flags.Len() > 0 {
		fmt.Fprintf(&b, "\nflags:\n%s", flags.String())
	}
	fmt.Fprintf(&b, "\nexample:\n  %s\n", cmd.example)
	return b.String()
}

func configFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.config, "c", "", "site configuration `file` (YAML)")
	fs.StringVar(&o.config, "config", "", "site configuration `file` (YAML)")
	fs.StringVar((*string)(&o.stateDir), "state-dir", DefaultStateDir, "`directory` for journals, locks and status sockets")
	logFlags(fs, o)
}

// logFlags are the flags of every command that logs.
func logFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text (key=value) or json (one object per line)")
}

func downFlags(fs *flag.FlagSet, o *options) {
	configFlags(fs, o)
	fs.BoolVar(&o.force, "force", false, "when the journal is damaged or missing, remove what the site file names and carries the agent's marks (docs/operations.md)")
}

func checkFlags(fs *flag.FlagSet, o *options) {
	configFlags(fs, o)
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

// noFlags is the flag set of commands without flags.
func noFlags(*flag.FlagSet, *options) {}

// newLogger returns the log/slog logger the flags ask for, writing to w.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if level == "" {
		level = "info"
	}
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("bad --log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("bad --log-format %q: want text or json", format)}
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: tunnel-agent <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-8s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun `tunnel-agent help <command>` (or `<command> -h`) for what a command does, its flags and an example.\n" +
		"Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. Docs: README.md and docs/.\n")
	return b.String()
}

// report prints err and maps it to an exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	var ce *config.Error
	var rc *netcfg.ConflictError // the file asks for a route the host already has differently
	var ee exitError
	var pe privilegeError
	switch {
	case errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &rc):
		fmt.Fprintf(stderr, "tunnel-agent: %v\n", err)
		return ExitUsage
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "tunnel-agent: %v\n", err)
		return ee.code
	case !errors.As(err, &pe) && errors.Is(err, fs.ErrPermission):
		err = privilegeError{err}
	}
	fmt.Fprintf(stderr, "tunnel-agent: %v\n", err)
	return ExitFailure
}

// privilegeError is a failure for want of privileges: EACCES or EPERM
// where the agent opens its state directory, its status socket, or
// changes the host. Any error that wraps one is reported as this.
type privilegeError struct{ err error }

func (e privilegeError) Error() string {
	return "permission denied: run as root or with CAP_NET_ADMIN (" + e.err.Error() + ")"
}

func (e privilegeError) Unwrap() error { return e.err }

// exitError is an error with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func runVersion(o *options) error {
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintln(o.stdout, versionLine(Version, info))
	return nil
}

// versionLine says which build this is: the -ldflags version if set, else
// the module version, with the VCS revision and time the binary was built
// from (runtime/debug build information) and the Go version.
func versionLine(ldflags string, info *debug.BuildInfo) string {
	if info == nil {
		return "tunnel-agent " + cmp.Or(ldflags, "(unknown version)")
	}
	v := cmp.Or(ldflags, info.Main.Version, "(devel)")
	var rev, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var extra []string
	if rev != "" {
		r := "revision " + rev[:min(len(rev), 12)]
		if when != "" {
			r += " of " + when
		}
		if modified {
			r += " (modified)"
		}
		extra = append(extra, r)
	}
	if info.GoVersion != "" {
		extra = append(extra, info.GoVersion)
	}
	if len(extra) == 0 {
		return "tunnel-agent " + v
	}
	return "tunnel-agent " + v + " (" + strings.Join(extra, ", ") + ")"
}

func requireConfig(o *options) error {
	if o.config == "" {
		return usageError{"missing -c FILE: the site configuration"}
	}
	return nil
}
