package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

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
		Capture   yaml.Node `yaml:"capture"` // config_capture.go
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
		// WireGuard mode (config_wireguard.go).
		Mode           yaml.Node `yaml:"mode"`
		PrivateKeyFile yaml.Node `yaml:"private_key_file"`
	}
	filePeer struct {
		Name     yaml.Node `yaml:"name"`
		Endpoint yaml.Node `yaml:"endpoint"`
		Prefixes yaml.Node `yaml:"prefixes"`
		// A file of further prefixes (config_prefixes_file.go).
		PrefixesFile yaml.Node `yaml:"prefixes_file"`
		Keepalive    yaml.Node `yaml:"keepalive"`
		// WireGuard mode (config_wireguard.go).
		PublicKey        yaml.Node `yaml:"public_key"`
		PresharedKeyFile yaml.Node `yaml:"preshared_key_file"`
	}
)

// decodeFile parses data into a node tree (for positions) and into the
// schema with unknown fields rejected. raw is nil when there is nothing
// to convert.
func decodeFile(data []byte, ps *problems) (doc *yaml.Node, raw *fileConfig) {
	defer func() { // yaml.v3 has panicked on hostile input before
		if r := recover(); r != nil {
			ps.structural(problem{err: fmt.Errorf("YAML parser failed: %v", r)}, "")
			raw = nil
		}
	}()
	doc = &yaml.Node{}
	if err := yaml.Unmarshal(data, doc); err != nil {
		ps.structural(withIPv6Hint(syntaxProblem(err), data), "")
		return nil, nil
	}
	if isAbsent(docRoot(doc)) {
		ps.structural(problem{err: errors.New("the file is empty; see docs/config.md")}, "")
		return nil, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	raw = &fileConfig{}
	if err := dec.Decode(raw); err != nil {
		decodeProblems(doc, err, ps)
	}
	checkEmptyItems(doc, ps)
	checkSingleDocument(dec, ps)
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
func checkSingleDocument(dec *yaml.Decoder, ps *problems) {
	var extra yaml.Node
	err := dec.Decode(&extra)
	if errors.Is(err, io.EOF) {
		return
	}
	p := problem{line: extra.Line, err: errors.New("only one YAML document is allowed (found another after ---)")}
	if err != nil {
		p.line = syntaxProblem(err).line
	}
	ps.list = append(ps.list, p) // the first document is still checked
}

// decodeProblems turns the errors of yaml.v3's Decode into problems.
func decodeProblems(doc *yaml.Node, err error, ps *problems) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		ps.structural(syntaxProblem(err), "")
		return
	}
	for _, msg := range te.Errors {
		typeProblem(doc, msg, ps)
	}
}

var (
	reSyntax   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	reUnknown  = regexp.MustCompile(`^line (\d+): field (.*) not found in type (\S+)$`)
	reDupKey   = regexp.MustCompile(`^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	reDupField = regexp.MustCompile(`^line (\d+): field (.*) already set in type (\S+)$`)
	reShape    = regexp.MustCompile(`^line (\d+): cannot unmarshal (\S+)(?: ` + "`.*`" + `)? into (\S+)$`)
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// syntaxProblem rewords a yaml.v3 parse error ("yaml: line 3: ...").
func syntaxProblem(err error) problem {
	if m := reSyntax.FindStringSubmatch(err.Error()); m != nil {
		return problem{line: atoi(m[1]), err: fmt.Errorf("invalid YAML: %s", m[2])}
	}
	return problem{err: fmt.Errorf("invalid YAML: %w", err)}
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
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		unknownField(doc, atoi(m[1]), m[2], ps)
	} else if m := reDupKey.FindStringSubmatch(msg); m != nil {
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

func unknownField(doc *yaml.Node, line int, name string, ps *problems) {
	path, key, _ := findKey(doc, line, name)
	err := fmt.Errorf("unknown field %q", name)
	if known := knownFields(parentPath(path)); key != nil && known != "" {
		err = fmt.Errorf("unknown field %q (known fields: %s)", name, known)
	}
	ps.list = append(ps.list, problem{path: path, node: key, line: lineIfNil(key, line), err: err})
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
