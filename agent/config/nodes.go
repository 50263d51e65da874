package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Field paths name a place in the file the way users write it:
// "tunnel.peers[0].prefixes[1]". The helpers here go from a path to its
// node (for positions) and from a position back to a path.

// docRoot returns the top node of a parsed document, or nil.
func docRoot(doc *yaml.Node) *yaml.Node {
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// deref follows an alias (*name) to the node it stands for.
func deref(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// isAbsent reports whether n was not given or was given as null.
func isAbsent(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// locate returns the node at path, or the deepest node on the way to it
// that exists (so a missing field points at the mapping that lacks it).
// It returns nil only when doc has no content.
func locate(doc *yaml.Node, path string) *yaml.Node {
	n, _ := descend(doc, path)
	return n
}

// lookup returns the node at path, or nil if there is none.
func lookup(doc *yaml.Node, path string) *yaml.Node {
	if n, found := descend(doc, path); found {
		return n
	}
	return nil
}

// descend walks path from the top of doc as far as it exists.
func descend(doc *yaml.Node, path string) (n *yaml.Node, found bool) {
	n = docRoot(doc)
	for _, seg := range splitPath(path) {
		next := child(deref(n), seg)
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, n != nil
}

// splitPath splits "a.b[0].c" into "a", "b", "[0]", "c".
func splitPath(path string) []string {
	var segs []string
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			segs = append(segs, name)
		}
		if idx != "" {
			for _, i := range strings.Split("["+idx, "[")[1:] {
				segs = append(segs, "["+i)
			}
		}
	}
	return segs
}

// child returns the value of key seg ("name") or the item seg ("[3]") of
// n, or nil.
func child(n *yaml.Node, seg string) *yaml.Node {
	if n == nil {
		return nil
	}
	if idx, ok := strings.CutPrefix(seg, "["); ok {
		i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
		if n.Kind != yaml.SequenceNode || err != nil || i < 0 || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1]
		}
	}
	return nil
}

// walk calls visit for every mapping entry (key != nil) and list item
// (key == nil) under n, in file order, with its path. Aliases are not
// followed.
func walk(n *yaml.Node, path string, visit func(path string, key, val *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, path, visit)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			visit(p, n.Content[i], n.Content[i+1])
			walk(n.Content[i+1], p, visit)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			visit(p, nil, c)
			walk(c, p, visit)
		}
	}
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// parentPath returns the path of the mapping or list holding path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// findLastKey returns the last mapping key named name on line (a repeated
// key is the later one).
func findLastKey(doc *yaml.Node, line int, name string) (path string, key, val *yaml.Node) {
	if doc == nil {
		return "", nil, nil
	}
	walk(doc, "", func(p string, k, v *yaml.Node) {
		if k != nil && k.Line == line && k.Value == name {
			path, key, val = p, k, v
		}
	})
	return path, key, val
}

// findValue returns the outermost value on line whose tag is tag (as
// yaml.v3 prints it in "cannot unmarshal !!seq into ...").
func findValue(doc *yaml.Node, line int, tag string) (path string, val *yaml.Node) {
	if doc == nil {
		return "", nil
	}
	if r := docRoot(doc); r != nil && r.Line == line && r.ShortTag() == tag {
		return "", r
	}
	walk(doc, "", func(p string, _, v *yaml.Node) {
		if val == nil && v.Line == line && v.ShortTag() == tag {
			path, val = p, v
		}
	})
	return path, val
}

// knownFields lists the keys the schema allows in the mapping at path, or
// "" if path is not a mapping of the schema.
func knownFields(path string) string {
	t := reflect.TypeFor[fileConfig]()
	for _, seg := range splitPath(path) {
		if t = schemaChild(t, seg); t == nil {
			return ""
		}
	}
	if t.Kind() != reflect.Struct || !strings.HasPrefix(t.Name(), "file") {
		return ""
	}
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Tag.Get("yaml")
	}
	return strings.Join(names, ", ")
}

// schemaChild returns the Go type at seg under t, or nil.
func schemaChild(t reflect.Type, seg string) reflect.Type {
	if strings.HasPrefix(seg, "[") {
		if t.Kind() != reflect.Slice {
			return nil
		}
		return t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") == seg {
			return t.Field(i).Type
		}
	}
	return nil
}

// describeNode says what the user wrote, for "expected X, got Y".
func describeNode(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if isAbsent(n) {
		return "nothing (null)"
	}
	return fmt.Sprintf("%q", n.Value)
}

// describeTag is describeNode when only yaml.v3's short tag is known.
func describeTag(tag string) string {
	switch tag {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	}
	return "a single value (" + tag + ")"
}

// describeGoType names what a schema type expects in YAML terms.
func describeGoType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "config.file"):
		return "a mapping"
	}
	return "a single value"
}
