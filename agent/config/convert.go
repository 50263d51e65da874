package config

import (
	"fmt"
	"net/netip"
	"regexp"

	"gopkg.in/yaml.v3"
)

// fileFacts records what the file gave where Config cannot tell.
type fileFacts struct {
	keepaliveSet []bool // per peer: keepalive was given (0 included)
}

// converter turns the decoded file into a Config, parsing every value and
// reporting each bad or missing one. A bad value is left as its zero
// value, at its index in lists, so later paths stay right.
type converter struct {
	ps  *problems
	dir string // the site file's directory: relative file names start there
}

func convert(f *fileConfig, ps *problems, dir string) (*Config, fileFacts) {
	c := converter{ps, dir}
	cfg := &Config{
		Site: c.requiredString("site", &f.Site),
		LAN:  c.lan("lan", &f.LAN),
	}
	for i := range f.Namespaces {
		cfg.Namespaces = append(cfg.Namespaces, c.namespace(fmt.Sprintf("namespaces[%d]", i), &f.Namespaces[i]))
	}
	var facts fileFacts
	cfg.Tunnel, facts = c.tunnel("tunnel", &f.Tunnel)
	cfg.Metrics = c.metrics("metrics", &f.Metrics)
	return cfg, facts
}

func (c converter) lan(path string, f *fileLAN) LAN {
	return LAN{
		Interface: c.requiredString(path+".interface", &f.Interface),
		MTU:       parseField(c, path+".mtu", &f.MTU, false, parseMTU),
		Offloads:  c.offloads(path+".offloads", &f.Offloads),
		Capture:   parseField(c, path+".capture", &f.Capture, false, parseCaptureMode),
	}
}

func (c converter) namespace(path string, f *fileNamespace) Namespace {
	return Namespace{
		Name:        c.requiredString(path+".name", &f.Name),
		Veth:        c.veth(path+".veth", &f.Veth),
		HostAddress: parseField(c, path+".host_address", &f.HostAddress, true, parseIfacePrefix),
		Address:     parseField(c, path+".address", &f.Address, true, parseIfacePrefix),
		Gateway:     parseField(c, path+".gateway", &f.Gateway, false, parseGateway),

		HostAddress6: parseField(c, path+".host_address6", &f.HostAddress6, false, parseIfacePrefix6),
		Address6:     parseField(c, path+".address6", &f.Address6, false, parseIfacePrefix6),
		Gateway6:     parseField(c, path+".gateway6", &f.Gateway6, false, parseGateway6),
	}
}

func (c converter) veth(path string, f *fileVeth) Veth {
	return Veth{
		Host:     c.requiredString(path+".host", &f.Host),
		Peer:     c.requiredString(path+".peer", &f.Peer),
		MTU:      parseField(c, path+".mtu", &f.MTU, false, parseMTU),
		Offloads: c.offloads(path+".offloads", &f.Offloads),
	}
}

func (c converter) tunnel(path string, f *fileTunnel) (Tunnel, fileFacts) {
	t := Tunnel{
		Listen:        parseField(c, path+".listen", &f.Listen, true, parseAddrPort),
		LocalPrefixes: c.prefixes(path+".local_prefixes", &f.LocalPrefixes),
		Blackhole:     c.prefixes(path+".blackhole", &f.Blackhole),
		BlackholeSet:  !isAbsent(&f.Blackhole),
		Relay:         parseField(c, path+".relay", &f.Relay, false, parseBool),
	}
	if len(f.Peers) == 0 {
		c.ps.addf(path+".peers", nil, "required: at least one peer")
	}
	t.Mode, t.WireGuard = c.tunnelWireGuard(path, f)
	t.Dataplane = parseField(c, path+".dataplane", &f.Dataplane, false, parseDataplane)
	facts := fileFacts{keepaliveSet: make([]bool, len(f.Peers))}
	for i := range f.Peers {
		t.Peers = append(t.Peers, c.peer(fmt.Sprintf("%s.peers[%d]", path, i), &f.Peers[i]))
		facts.keepaliveSet[i] = !isAbsent(&f.Peers[i].Keepalive)
	}
	return t, facts
}

func (c converter) peer(path string, f *filePeer) Peer {
	ep := parseField(c, path+".endpoint", &f.Endpoint, false, parseEndpoint) // endpoint.go
	p := Peer{
		Name:         c.requiredString(path+".name", &f.Name),
		Endpoint:     ep.addr,
		EndpointName: ep.name,
		Prefixes:     c.prefixes(path+".prefixes", &f.Prefixes),
		Keepalive:    parseField(c, path+".keepalive", &f.Keepalive, false, parseKeepalive),
		WireGuard:    c.peerWireGuard(path, f),
	}
	var fromFile []netip.Prefix
	p.PrefixesFile, fromFile, p.fileLines = c.prefixesFile(path+".prefixes_file", &f.PrefixesFile) // prefixes_file.go
	p.Prefixes = append(p.Prefixes, fromFile...)
	if n := deref(&f.Prefixes); isAbsent(&f.PrefixesFile) && (isAbsent(n) || (n.Kind == yaml.SequenceNode && len(n.Content) == 0)) {
		c.ps.addf(path+".prefixes", where(&f.Prefixes), "required: at least one prefix, e.g. [192.168.111.0/24] (or a prefixes_file)")
	}
	return p
}

// parseField reads the single value n at path with parse, reporting a
// missing (when required) or bad value. It returns the zero T then.
func parseField[T any](c converter, path string, n *yaml.Node, required bool, parse func(string) (T, error)) T {
	var v T
	s, ok := c.scalar(path, n)
	switch {
	case !ok && required && isAbsent(n):
		c.missing(path, n)
	case ok:
		var err error
		if v, err = parse(s); err != nil {
			c.ps.add(path, n, err)
		}
	}
	return v
}

func (c converter) requiredString(path string, n *yaml.Node) string {
	return parseField(c, path, n, true, nonEmpty)
}

// scalar returns the text of n; ok is false when n is absent or is not a
// single value (reported).
func (c converter) scalar(path string, n *yaml.Node) (s string, ok bool) {
	if isAbsent(n) {
		return "", false
	}
	if v := deref(n); v.Kind != yaml.ScalarNode {
		c.ps.addf(path, n, "expected a single value, got %s", describeNode(v))
		return "", false
	}
	return deref(n).Value, true
}

// missing reports a required value that is absent or null.
func (c converter) missing(path string, n *yaml.Node) {
	if n.Kind == 0 {
		c.ps.addf(path, nil, "required field is missing")
		return
	}
	c.ps.addf(path, n, "missing value")
}

// list returns the items of the list n (nil when absent or not a list;
// the latter is reported).
func (c converter) list(path string, n *yaml.Node) []*yaml.Node {
	if isAbsent(n) {
		return nil
	}
	if v := deref(n); v.Kind != yaml.SequenceNode {
		c.ps.addf(path, n, "expected a list, e.g. [10.0.0.0/24], got %s", describeNode(v))
		return nil
	}
	return deref(n).Content
}

// prefixes reads a list of prefixes in masked form. A given but empty
// list is an empty, non-nil slice.
func (c converter) prefixes(path string, n *yaml.Node) []netip.Prefix {
	items := c.list(path, n)
	if items == nil {
		return nil
	}
	out := make([]netip.Prefix, len(items))
	for i, it := range items {
		out[i] = parseField(c, fmt.Sprintf("%s[%d]", path, i), it, true, parseNetPrefix)
	}
	return out
}

// reWord matches offload names that are safe inside a field path.
var reWord = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c converter) offloads(path string, n *yaml.Node) Offloads {
	list, probs := parseOffloads(n)
	for _, p := range probs {
		fpath := path
		if reWord.MatchString(p.key) {
			fpath = path + "." + p.key
		}
		c.ps.add(fpath, p.node, p.err)
	}
	return list
}

// where returns n, or nil when n was not in the file (no position).
func where(n *yaml.Node) *yaml.Node {
	if n == nil || n.Kind == 0 {
		return nil
	}
	return n
}
