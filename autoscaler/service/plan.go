package service

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Relocate returns the plan source src with the settings at the given
// dotted paths (ssh.key, state.tls.ca...) replaced, added where missing:
// the files the plan names on the operator's machine are, in the service,
// secrets at other paths. Everything else (comments, anchors, order) is
// kept, so the config reads like the plan it came from.
func Relocate(src []byte, set map[string]string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("read plan: not a mapping")
	}
	for key, value := range set {
		if err := setPath(doc.Content[0], strings.Split(key, "."), value); err != nil {
			return nil, fmt.Errorf("set %s: %w", key, err)
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("write plan: %w", err)
	}
	return out.Bytes(), enc.Close()
}

// setPath sets m's value at path, creating mappings on the way.
func setPath(m *yaml.Node, path []string, value string) error {
	if m.Kind == yaml.AliasNode {
		m = m.Alias
	}
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a mapping", path[0])
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		v := m.Content[i+1]
		if len(path) == 1 {
			m.Content[i+1] = scalar(value)
			return nil
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		return setPath(v, path[1:], value)
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, k, scalar(value))
		return nil
	}
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, k, v)
	return setPath(v, path[1:], value)
}

// scalar is value as a YAML scalar: true and false are booleans (ssh.agent),
// anything else a string.
func scalar(value string) *yaml.Node {
	tag := "!!str"
	if value == "true" || value == "false" {
		tag = "!!bool"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}
