package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Offload is one ethtool feature setting.
type Offload struct {
	// Name is an ethtool short name as `ethtool -K` takes it ("rx",
	// "tso") or a kernel feature name ("rx-checksum"). Whether the device
	// has it is checked when it is applied.
	Name string
	On   bool
}

// Offloads are feature settings in file order. In YAML they are a mapping
// of name to on/off: {rx: off, tx: off}.
type Offloads []Offload

// ethtoolShortNames are the short names `ethtool -K` takes.
var ethtoolShortNames = []string{"rx", "tx", "sg", "tso", "ufo", "gso", "gro", "lro", "rxvlan", "txvlan", "ntuple", "rxhash"}

// reFeatureName matches kernel feature names (which include the short
// names); a few kernel names have underscores, e.g. tx-udp_tnl-segmentation.
var reFeatureName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// UnmarshalYAML reads a mapping of feature name to on, off, true or false
// (null = none), keeping file order. A bad entry is reported as a
// *yaml.TypeError naming its line, so decoding goes on with other fields.
func (o *Offloads) UnmarshalYAML(n *yaml.Node) error {
	list, probs := parseOffloads(n)
	if len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = fmt.Sprintf("line %d: %s", p.node.Line, p.err)
		}
		return &yaml.TypeError{Errors: msgs}
	}
	*o = list
	return nil
}

// MarshalYAML writes the settings back as a flow mapping of on/off.
func (o Offloads) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for _, f := range o {
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: f.Name},
			&yaml.Node{Kind: yaml.ScalarNode, Value: onOff(f.On)})
	}
	return m, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// offloadProblem is a bad offloads entry; key is its name ("" when the
// problem is with the whole mapping), node is where.
type offloadProblem struct {
	key  string
	node *yaml.Node
	err  error
}

// parseOffloads reads an offloads mapping and returns every bad entry.
func parseOffloads(n *yaml.Node) (Offloads, []offloadProblem) {
	if isAbsent(n) {
		return nil, nil
	}
	m := deref(n)
	if m.Kind != yaml.MappingNode {
		err := fmt.Errorf("expected a mapping of feature name to on/off, e.g. {rx: off, tx: off}; got %s", describeNode(m))
		return nil, []offloadProblem{{node: n, err: err}}
	}
	var list Offloads
	var probs []offloadProblem
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if err := checkFeatureName(k, seen); err != nil {
			probs = append(probs, offloadProblem{key: k.Value, node: k, err: err})
			continue
		}
		on, err := parseOnOff(v)
		if err != nil {
			probs = append(probs, offloadProblem{key: k.Value, node: v, err: err})
			continue
		}
		list = append(list, Offload{Name: k.Value, On: on})
	}
	return list, probs
}

// checkFeatureName checks the name k of an entry; seen holds the names
// before it.
func checkFeatureName(k *yaml.Node, seen map[string]bool) error {
	name := k.Value
	switch {
	case k.Kind != yaml.ScalarNode:
		return errors.New("a feature name must be a single word, e.g. rx")
	case !reFeatureName.MatchString(name):
		return fmt.Errorf("invalid feature name %q: want an ethtool short name (%s) or a kernel feature name (lowercase, e.g. rx-checksum)",
			name, strings.Join(ethtoolShortNames, ", "))
	case seen[name]:
		return fmt.Errorf("feature %q is given twice", name)
	}
	seen[name] = true
	return nil
}

// parseOnOff reads on, off, true or false (any case).
func parseOnOff(v *yaml.Node) (bool, error) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode {
		switch strings.ToLower(v.Value) {
		case "on", "true":
			return true, nil
		case "off", "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("want on, off, true or false, got %s", describeNode(v))
}
