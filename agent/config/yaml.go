package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml4 "go.yaml.in/yaml/v4"
	"gopkg.in/yaml.v3"
)

// The file's schema as yaml.v3 decodes it. Every leaf is a yaml.Node, so
// decoding never fails on a value: convert parses the values itself and
// reports each bad one with its path and position. What yaml.v3 still
// reports is the shape: unknown fields, duplicate keys, a list or a scalar
// where a mapping belongs.
type (
	fileConfig struct {
		Site       yaml.Node       `yaml:"site"`
		LAN        fileLAN         `yaml:"lan"`
		Namespaces []fileNamespace `yaml:"namespaces"`
		Tunnel     fileTunnel      `yaml:"tunnel"`
		Metrics    fileMetrics     `yaml:"metrics"`
	}
	fileLAN struct {
		Interface yaml.Node `yaml:"interface"`
		MTU       yaml.Node `yaml:"mtu"`
		Offloads  yaml.Node `yaml:"offloads"`
		Capture   yaml.Node `yaml:"capture"` // capture.go
	}
	fileNamespace struct {
		Name        yaml.Node `yaml:"name"`
		Veth        fileVeth  `yaml:"veth"`
		HostAddress yaml.Node `yaml:"host_address"`
		Address     yaml.Node `yaml:"address"`
		Gateway     yaml.Node `yaml:"gateway"`
		// IPv6 companions (config_ipv6.go).
		HostAddress6 yaml.Node `yaml:"host_address6"`
		Address6     yaml.Node `yaml:"address6"`
		Gateway6     yaml.Node `yaml:"gateway6"`
	}
	fileVeth struct {
		Host     yaml.Node `yaml:"host"`
		Peer     yaml.Node `yaml:"peer"`
		MTU      yaml.Node `yaml:"mtu"`
		Offloads yaml.Node `yaml:"offloads"`
	}
	fileTunnel struct {
		Listen        yaml.Node  `yaml:"listen"`
		LocalPrefixes yaml.Node  `yaml:"local_prefixes"`
		Peers         []filePeer `yaml:"peers"`
		Blackhole     yaml.Node  `yaml:"blackhole"`
		Relay         yaml.Node  `yaml:"relay"`
		// WireGuard mode (wireguard.go).
		Mode           yaml.Node `yaml:"mode"`
		PrivateKeyFile yaml.Node `yaml:"private_key_file"`
		// userspace or ebpf (dataplane.go).
		Dataplane yaml.Node `yaml:"dataplane"`
	}
	filePeer struct {
		Name     yaml.Node `yaml:"name"`
		Endpoint yaml.Node `yaml:"endpoint"`
		Prefixes yaml.Node `yaml:"prefixes"`
		// A file of further prefixes (prefixes_file.go).
		PrefixesFile yaml.Node `yaml:"prefixes_file"`
		Keepalive    yaml.Node `yaml:"keepalive"`
		// WireGuard mode (wireguard.go).
		PublicKey        yaml.Node `yaml:"public_key"`
		PresharedKeyFile yaml.Node `yaml:"preshared_key_file"`
	}
)

// decodeFile parses data into a node tree (for positions) and decodes the
// schema from that tree, so the file is parsed once. Unknown fields are
// found by walking the tree along the schema. A file with YAML aliases is
// refused before anything is decoded (bounds.go). raw is nil when
// there is nothing to convert.
func decodeFile(data []byte, ps *problems) (doc *yaml.Node, raw *fileConfig) {
	defer func() { // yaml.v3 has panicked on hostile input before
		if r := recover(); r != nil {
			ps.structural(problem{err: fmt.Errorf("YAML parser failed: %v", r)}, "")
			raw = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil && !errors.Is(err, io.EOF) {
		ps.structural(withIPv6Hint(syntaxProblem(err, data), data), "")
		return nil, nil
	}
	if isAbsent(docRoot(doc)) {
		ps.structural(problem{err: errors.New("the file is empty; see docs/config.md")}, "")
		return nil, nil
	}
	if refuseAliases(doc, ps) {
		return doc, nil
	}
	raw = &fileConfig{}
	if err := doc.Decode(raw); err != nil {
		decodeProblems(doc, err, data, ps)
	}
	unknownFields(docRoot(doc), reflect.TypeFor[fileConfig](), "", ps)
	checkEmptyItems(doc, ps)
	checkSingleDocument(dec, data, ps)
	return doc, raw
}

// checkEmptyItems reports null items in the lists of mappings: yaml.v3
// leaves them out silently, and the items after them would move up.
func checkEmptyItems(doc *yaml.Node, ps *problems) {
	for _, list := range []string{"namespaces", "tunnel.peers"} {
		n := deref(lookup(doc, list))
		if n == nil || n.Kind != yaml.SequenceNode {
			continue
		}
		for i, item := range n.Content {
			if isAbsent(item) {
				p := problem{path: fmt.Sprintf("%s[%d]", list, i), node: item, err: errors.New("empty list item")}
				ps.structural(p, list)
			}
		}
	}
}

// checkSingleDocument reports a second YAML document after the first.
func checkSingleDocument(dec *yaml.Decoder, data []byte, ps *problems) {
	var extra yaml.Node
	err := dec.Decode(&extra)
	if errors.Is(err, io.EOF) {
		return
	}
	p := problem{line: extra.Line, err: errors.New("only one YAML document is allowed (found another after ---)")}
	if err != nil {
		sp := syntaxProblem(err, data)
		p.line, p.col = sp.line, sp.col
	}
	ps.list = append(ps.list, p) // the first document is still checked
}

// unknownFields reports the keys of the mapping n that the schema type t
// (a file* struct) does not have, and descends into the ones it has.
// Keys under a part that did not decode are left alone, as yaml.v3 did
// with Decoder.KnownFields.
func unknownFields(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	switch {
	case n == nil || ps.isBroken(path):
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			unknownFields(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	case t.Kind() == reflect.Struct && t != reflect.TypeFor[yaml.Node]() && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			p := joinPath(path, key.Value)
			if ft := schemaChild(t, key.Value); ft != nil {
				unknownFields(n.Content[i+1], ft, p, ps)
				continue
			}
			err := fmt.Errorf("unknown field %q", key.Value)
			if known := knownFields(path); known != "" {
				err = fmt.Errorf("unknown field %q (known fields: %s)", key.Value, known)
			}
			ps.list = append(ps.list, problem{path: p, node: key, err: err})
		}
	}
}

// decodeProblems turns the errors of yaml.v3's Decode into problems.
func decodeProblems(doc *yaml.Node, err error, data []byte, ps *problems) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		ps.structural(syntaxProblem(err, data), "")
		return
	}
	for i, msg := range te.Errors {
		if i == maxListedErrors { // each lookup walks the tree: bound the work
			ps.unplaced += len(te.Errors) - i
			break
		}
		typeProblem(doc, msg, ps)
	}
}

var (
	reSyntax   = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)
	reDupKey   = regexp.MustCompile(`^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	reDupField = regexp.MustCompile(`^line (\d+): field (.*) already set in type (\S+)$`)
	reShape    = regexp.MustCompile(`^line (\d+): cannot unmarshal (\S+)(?: ` + "`.*`" + `)? into (\S+)$`)
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// syntaxProblem rewords a yaml.v3 parse error ("yaml: line 3: ...") of
// data. yaml.v3 gives the line where the enclosing block starts, which
// can be far above the mistake; the line and column come from the
// parser's own mark of the problem, which go.yaml.in/yaml/v4 (the same
// libyaml-derived parser, maintained) reports.
func syntaxProblem(err error, data []byte) problem {
	m := reSyntax.FindStringSubmatch(err.Error())
	if m == nil {
		return problem{err: fmt.Errorf("invalid YAML: %w", err)}
	}
	p := problem{line: atoi(m[1]), err: fmt.Errorf("invalid YAML: %s", m[2])}
	if mark, ok := syntaxMark(data); ok {
		p.line, p.col = mark.Line, mark.Column
	}
	return p
}

// syntaxMark returns where the YAML parser found the first syntax error
// in data, in any of its documents.
func syntaxMark(data []byte) (yaml4.Mark, bool) {
	l, err := yaml4.NewLoader(bytes.NewReader(data))
	if err != nil {
		return yaml4.Mark{}, false
	}
	for {
		var n yaml4.Node
		err := l.Load(&n)
		var le *yaml4.LoadError
		switch {
		case err == nil:
			continue
		case errors.As(err, &le) && le.Mark.Line > 0:
			return le.Mark, true
		default: // io.EOF, or an error without a position
			return yaml4.Mark{}, false
		}
	}
}

// reBareIPv6Port matches a line whose value is an unquoted [IPv6]:port,
// which YAML reads as a flow list followed by junk.
var reBareIPv6Port = regexp.MustCompile(`^\s*(-\s+)?[\w-]+:\s+\[[0-9A-Za-z:.%_-]*\]:\d*\s*(#.*)?$`)

// withIPv6Hint points a syntax error at an unquoted [IPv6]:port, the
// likely cause, when the file has one.
func withIPv6Hint(p problem, data []byte) problem {
	for i, line := range bytes.Split(data, []byte("\n")) {
		if reBareIPv6Port.Match(line) {
			return problem{line: i + 1, err: fmt.Errorf("%w; quote an IPv6 ADDRESS:PORT, e.g. \"[2001:db8::1]:50000\"", p.err)}
		}
	}
	return p
}

// typeProblem rewords one message of a *yaml.TypeError into a problem
// with a field path and a column.
func typeProblem(doc *yaml.Node, msg string, ps *problems) {
	if m := reDupKey.FindStringSubmatch(msg); m != nil {
		name, _ := strconv.Unquote(m[2])
		duplicateKey(doc, atoi(m[1]), name, m[3], ps)
	} else if m := reDupField.FindStringSubmatch(msg); m != nil {
		duplicateKey(doc, atoi(m[1]), m[2], "", ps)
	} else if m := reShape.FindStringSubmatch(msg); m != nil {
		wrongShape(doc, atoi(m[1]), m[2], m[3], ps)
	} else if m := reLine.FindStringSubmatch(msg); m != nil {
		ps.structural(problem{line: atoi(m[1]), err: errors.New(m[2])}, "")
	} else {
		ps.structural(problem{err: errors.New(msg)}, "")
	}
}

func duplicateKey(doc *yaml.Node, line int, name, first string, ps *problems) {
	path, key, _ := findLastKey(doc, line, name)
	err := fmt.Errorf("duplicate key %q", name)
	if first != "" {
		err = fmt.Errorf("duplicate key %q (first given at line %s)", name, first)
	}
	// yaml.v3 skips the whole mapping that holds a duplicate key.
	ps.structural(problem{path: path, node: key, line: lineIfNil(key, line), err: err}, undecoded(parentPath(path)))
}

func wrongShape(doc *yaml.Node, line int, tag, goType string, ps *problems) {
	path, val := findValue(doc, line, tag)
	err := fmt.Errorf("expected %s, got %s", describeGoType(goType), describeTag(tag))
	if val != nil {
		err = fmt.Errorf("expected %s, got %s", describeGoType(goType), describeNode(val))
	}
	ps.structural(problem{path: path, node: val, line: lineIfNil(val, line), err: err}, undecoded(path))
}

// undecoded returns what is lost when the node at path fails to decode:
// that node, or the whole list when it is a list item, since yaml.v3 then
// leaves the item out and the items after it move up.
func undecoded(path string) string {
	if strings.HasSuffix(path, "]") {
		return parentPath(path)
	}
	return path
}

func lineIfNil(n *yaml.Node, line int) int {
	if n != nil {
		return 0
	}
	return line
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
