// Package agent is tunnel-agent's command line: the YAML site
// configuration and its validation, the mapping of a site onto the host
// configuration (package netcfg) and the dataplane (package dataplane),
// and the life cycle of `up`, `down` and `check`.
package agent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"tunnel-agent/netcfg"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure
	ExitUsage   = 2 // usage or configuration error
)

// Version is set at build time with -ldflags "-X tunnel-agent/agent.Version=...".
var Version = "dev"

// DefaultStateDir holds journals, locks and status sockets.
const DefaultStateDir = "/run/tunnel-agent"

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options are the flags shared by the commands.
type options struct {
	config   string
	stateDir string
	json     bool
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
	log      *slog.Logger
}

type command struct {
	summary string
	run     func(o *options) error
	flags   func(fs *flag.FlagSet, o *options)
}

var commands = map[string]command{
	"up":      {"apply the host configuration, run the tunnel, revert on SIGINT/SIGTERM", runUp, configFlags},
	"demo":    {"run both sites of the tutorial in throwaway namespaces and show traffic (root)", runDemo, func(*flag.FlagSet, *options) {}},
	"down":    {"revert what a killed `up` left behind (a no-op when nothing is left)", runDown, configFlags},
	"reload":  {"check the file and make the running agent re-read it (SIGHUP): applies only the difference", runReload, configFlags},
	"check":   {"validate the file and print the plan of host changes; touches nothing", runCheck, checkFlags},
	"status":  {"print the running agent's peers and counters", runStatus, checkFlags},
	"version": {"print the version", runVersion, func(*flag.FlagSet, *options) {}},
	"genkey":  {"print a new WireGuard private key (as `wg genkey`)", runGenkey, noFlags},
	"genpsk":  {"print a new WireGuard preshared key (as `wg genpsk`)", runGenpsk, noFlags},
	"pubkey":  {"read a private key on stdin, print its public key (as `wg pubkey`)", runPubkey, noFlags},
}

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	o := &options{stdout: stdout, stderr: stderr}
	err := dispatch(args, o)
	return report(err, stderr)
}

func dispatch(args []string, o *options) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(o.stderr, usage())
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q (run `tunnel-agent help`)", args[0])}
	}
	fs := flag.NewFlagSet("tunnel-agent "+args[0], flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	cmd.flags(fs, o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	log, err := newLogger(o.logLevel, o.stderr)
	if err != nil {
		return err
	}
	o.log = log
	return cmd.run(o)
}

func configFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.config, "c", "", "site configuration `file` (YAML)")
	fs.StringVar(&o.config, "config", "", "site configuration `file` (YAML)")
	fs.StringVar(&o.stateDir, "state-dir", DefaultStateDir, "`directory` for journals, locks and status sockets")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

func checkFlags(fs *flag.FlagSet, o *options) {
	configFlags(fs, o)
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if level == "" {
		level = "info"
	}
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("bad --log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
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
	b.WriteString("\nRun `tunnel-agent <command> -h` for a command's flags. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n")
	return b.String()
}

// report prints err and maps it to an exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "tunnel-agent: %v\n", err)
	var ue usageError
	var ce *ConfigError
	var rc *netcfg.ConflictError // the file asks for a route the host already has differently
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &rc) {
		return ExitUsage
	}
	return ExitFailure
}

func runVersion(o *options) error {
	fmt.Fprintf(o.stdout, "tunnel-agent %s\n", Version)
	return nil
}

func requireConfig(o *options) error {
	if o.config == "" {
		return usageError{"missing -c FILE: the site configuration"}
	}
	return nil
}
