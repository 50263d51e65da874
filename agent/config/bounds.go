package config

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Bounds on what a site file can make the agent do, so that a hostile or
// broken file costs little memory and prints little: the file is read
// only up to MaxFileSize (config.go) and parsed once; YAML aliases are
// refused before anything is decoded (an alias repeats its anchor's value
// wherever it is used, and each use would be checked and quoted in an
// error again); at most maxListedErrors problems are listed, and a value
// quoted in one is cut to maxQuotedLen bytes. The parse of the densest
// 1 MiB of YAML still takes over 100 MB for a moment: a running agent
// checks a file to reload in a child process (the agent's reload_check.go).
const (
	maxListedErrors = 20
	maxQuotedLen    = 64
)

// refuseAliases reports the aliases (*name, also in merge keys "<<: *name")
// in doc as one problem at the first, and returns whether there were any.
func refuseAliases(doc *yaml.Node, ps *problems) bool {
	var first *yaml.Node
	var firstPath string
	count := 0
	note := func(path string, n *yaml.Node) {
		if n == nil || n.Kind != yaml.AliasNode {
			return
		}
		if count++; first == nil {
			first, firstPath = n, path
		}
	}
	if r := docRoot(doc); r != nil {
		note("", r)
		walk(r, "", func(path string, key, val *yaml.Node) {
			note(path, key)
			note(path, val)
		})
	}
	if first == nil {
		return false
	}
	msg := fmt.Sprintf("YAML aliases (*%s) are not allowed in a site file: write the value out", first.Value)
	if count > 1 {
		msg += fmt.Sprintf(" (%d aliases in the file, the first here)", count)
	}
	ps.structural(problem{path: firstPath, node: first, err: fmt.Errorf("%s", msg)}, "")
	return true
}

// reQuoted matches a Go-quoted string (as %q prints it) in a message.
var reQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// clipQuoted shortens each quoted value in msg longer than maxQuotedLen
// bytes to its start, saying how long it was.
func clipQuoted(msg string) string {
	if len(msg) <= maxQuotedLen {
		return msg
	}
	return reQuoted.ReplaceAllStringFunc(msg, func(q string) string {
		s, err := strconv.Unquote(q)
		if err != nil || len(s) <= maxQuotedLen {
			return q
		}
		cut := maxQuotedLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
	})
}

// capErrors keeps the first maxListedErrors of errs (in file order) and
// adds one that says how many more there are (unplaced included).
func capErrors(file string, errs []FieldError, unplaced int) []FieldError {
	more := unplaced
	if len(errs) > maxListedErrors {
		more += len(errs) - maxListedErrors
		errs = errs[:maxListedErrors]
	}
	if more > 0 {
		errs = append(errs, FieldError{File: file, Msg: fmt.Sprintf("and %d more problems (fix the ones above first)", more)})
	}
	return errs
}
