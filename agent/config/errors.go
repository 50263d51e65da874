package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error lists every problem found in a config file. Any failure of
// Load (unreadable file, YAML syntax, unknown field, bad value) is a
// *Error.
type Error struct {
	Errors []FieldError // in file order
}

// Error renders one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so errors.Is and errors.As see their causes
// (for example fs.ErrNotExist for a missing file).
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// FieldError is one problem, placed in the file.
type FieldError struct {
	File   string
	Line   int    // 1-based; 0 = not tied to a line (e.g. unreadable file)
	Column int    // 1-based; 0 = unknown
	Field  string // path of the field, e.g. tunnel.peers[0].prefixes[1]; "" = whole file
	Msg    string
	Err    error `json:"-"` // underlying cause, if any
}

// Error renders the problem as file:line:col: field: message, leaving out
// the parts that are unknown.
func (fe FieldError) Error() string {
	var b strings.Builder
	b.WriteString(cmp.Or(fe.File, "<config>"))
	if fe.Line > 0 {
		b.WriteString(":" + strconv.Itoa(fe.Line))
		if fe.Column > 0 {
			b.WriteString(":" + strconv.Itoa(fe.Column))
		}
	}
	b.WriteString(": ")
	if fe.Field != "" {
		b.WriteString(fe.Field + ": ")
	}
	b.WriteString(fe.Msg)
	return b.String()
}

// Unwrap returns the underlying cause.
func (fe FieldError) Unwrap() error { return fe.Err }

// problem is a finding before it is placed in the file.
type problem struct {
	path string     // field path
	node *yaml.Node // where it is; nil = look it up by path
	line int        // used when node is nil and path gives nothing better
	col  int        // with line
	file string     // another file than the site file (a prefixes_file) that line is in
	err  error
}

// problems collects findings while a file is checked.
type problems struct {
	list []problem
	// broken are paths whose YAML did not decode into the schema (wrong
	// shape, duplicate keys). Later findings under them are dropped: they
	// would only echo the first one.
	broken []string
	// unplaced counts findings left out to bound the work
	// (decodeProblems); they count in "and N more".
	unplaced int
}

// add records err for the field at path; node, if not nil, is where.
func (ps *problems) add(path string, node *yaml.Node, err error) {
	if ps.isBroken(path) {
		return
	}
	ps.list = append(ps.list, problem{path: path, node: node, err: err})
}

// addf is add with a formatted error; %w wraps as in fmt.Errorf.
func (ps *problems) addf(path string, node *yaml.Node, format string, args ...any) {
	ps.add(path, node, fmt.Errorf(format, args...))
}

// addIn records err for the field at path, found on line of file, a file
// the field names (line 0: the file as a whole).
func (ps *problems) addIn(path, file string, line int, err error) {
	if ps.isBroken(path) {
		return
	}
	ps.list = append(ps.list, problem{path: path, file: file, line: line, err: err})
}

// structural records a problem with the shape of the YAML at path and
// marks broken as not decoded.
func (ps *problems) structural(p problem, broken string) {
	ps.list = append(ps.list, p)
	ps.broken = append(ps.broken, broken)
}

// clean reports whether the whole file decoded into the schema.
func (ps *problems) clean() bool { return len(ps.broken) == 0 }

func (ps *problems) isBroken(path string) bool {
	for _, b := range ps.broken {
		if isUnder(path, b) {
			return true
		}
	}
	return false
}

// hasMatch reports whether a problem was found at a path re matches.
func (ps *problems) hasMatch(re *regexp.Regexp) bool {
	return slices.ContainsFunc(ps.list, func(p problem) bool { return re.MatchString(p.path) })
}

// isUnder reports whether path is root or a field inside it.
func isUnder(path, root string) bool {
	if root == "" || path == root {
		return true
	}
	rest, ok := strings.CutPrefix(path, root)
	return ok && (rest[0] == '.' || rest[0] == '[')
}

// fieldErrors places the findings in the file (doc is its parsed tree,
// possibly nil) and returns them in file order, without repeats, at most
// maxListedErrors of them and then one saying how many more there are.
// Quoted values are shortened (bounds.go).
func (ps *problems) fieldErrors(file string, doc *yaml.Node) []FieldError {
	var out []FieldError
	for _, p := range ps.list {
		fe := FieldError{File: file, Field: p.path, Msg: clipQuoted(p.err.Error()), Err: errors.Unwrap(p.err), Line: p.line, Column: p.col}
		if p.file != "" {
			fe.File = p.file
		} else if n := cmp.Or(p.node, locate(doc, p.path)); n != nil && p.line == 0 {
			fe.Line, fe.Column = n.Line, n.Column
		}
		out = append(out, fe)
	}
	// The site file's problems first, then those of the files it names.
	slices.SortStableFunc(out, func(a, b FieldError) int {
		return cmp.Or(compareBool(a.File != file, b.File != file), cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	out = slices.CompactFunc(out, func(a, b FieldError) bool {
		return a.Line == b.Line && a.Column == b.Column && a.Field == b.Field && a.Msg == b.Msg
	})
	return capErrors(file, out, ps.unplaced)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
