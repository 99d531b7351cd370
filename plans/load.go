package plans

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/provisionhq/provision/providers"
)

// ProviderSet is what the loader needs to know about providers: which names
// exist, and each one's static settings check. A *providers.Registry
// satisfies it.
type ProviderSet interface {
	Has(name string) bool
	Names() []string
	// CheckSettings checks a pool's settings for the named provider with
	// no credentials and no network; nil when they are valid.
	CheckSettings(name string, s providers.Settings) []providers.SettingError
	// Spot reports whether the named provider offers spot capacity.
	Spot(name string) bool
}

// Options tune Load, Parse and FromValues.
type Options struct {
	// Providers checks each pool's provider name and settings; nil skips
	// both (for tools that only read a plan and never create machines).
	Providers ProviderSet
	// ImageDir, when set, is where kubernetes.images are found, by file
	// name: the autoscaler inside the cluster reads them from a node's copy
	// of the artifacts, not from the operator's paths in the plan.
	ImageDir string
}

// Load reads, decodes and validates the plan file at path. Problems in the
// file come back as an ErrorList (every problem, each with file:line:col);
// failing to read the file is an ordinary wrapped error.
func Load(path string, opts Options) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load plan: %w", err)
	}
	return Parse(path, data, opts)
}

// Parse decodes and validates a plan held in memory. filename is used in
// error positions and as the base for relative paths in the plan.
func Parse(filename string, data []byte, opts Options) (*Plan, error) {
	d := &decoder{file: filename, pos: map[string]position{}, bad: map[string]bool{}, budget: maxNodes}
	root := d.document(data)
	if root == nil {
		return nil, d.errs.sorted()
	}
	p := &Plan{Path: filename}
	d.pos[""] = position{Val: posOf(root)}
	d.value("", root, reflect.ValueOf(p).Elem())
	p.pos = d.pos
	// Validate even when decoding failed, so one run reports every problem;
	// the validator skips values that did not decode.
	v := &validator{plan: p, d: d, opts: opts}
	v.defaults()
	v.validate()
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	return p, nil
}

// FromValues defaults and validates a plan built in code rather than read
// from a file (the Pulumi provider's inputs), with the same checks and
// messages as Parse. A zero value means "not written", as an absent key does
// in a file. Its errors carry Path but no file position. The plan's slices,
// maps and pointers are taken over: defaults are filled in place.
func FromValues(p Plan, opts Options) (*Plan, error) {
	d := &decoder{file: p.Path, pos: map[string]position{"": {}}, bad: map[string]bool{}, noPos: true}
	recordValues(d.pos, "", reflect.ValueOf(p))
	p.pos = d.pos
	v := &validator{plan: &p, d: d, opts: opts}
	v.defaults()
	v.validate()
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	return &p, nil
}

// recordValues marks every non-zero value under v as written, by the path
// the loader would record for it, so defaults and "required" checks treat a
// plan built from values as they treat a file.
func recordValues(pos map[string]position, path string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			recordValues(pos, path, v.Elem())
		}
	case reflect.Struct:
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			if fv.IsZero() {
				continue
			}
			p := join(path, f.name)
			pos[p] = position{}
			recordValues(pos, p, fv)
		}
	case reflect.Slice:
		for i := range v.Len() {
			p := fmt.Sprintf("%s[%d]", path, i)
			pos[p] = position{}
			recordValues(pos, p, v.Index(i))
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		iter := v.MapRange()
		for iter.Next() {
			p := join(path, iter.Key().String())
			pos[p] = position{}
			recordValues(pos, p, iter.Value())
		}
	}
}

// maxNodes bounds the work a plan can ask of the decoder: aliases make a tiny
// file expand exponentially ("billion laughs"), and no real plan comes close.
const maxNodes = 100_000

// position is where a value was written: Key is the "name:" that introduced
// it (zero for list items and the document), Val the value itself.
type position struct {
	Key, Val yamlPos
	Null     bool // written but empty ("bastion:" alone), which means "default"
}

type yamlPos struct{ Line, Col int }

func posOf(n *yaml.Node) yamlPos { return yamlPos{n.Line, n.Column} }

type decoder struct {
	file   string
	errs   ErrorList
	pos    map[string]position // by path: "cluster.name", "pools[1].settings.zone"
	bad    map[string]bool     // paths whose value did not decode; validation skips them
	budget int
	noPos  bool // the plan was built from values (FromValues), not read from a file
}

// errorf reports a problem at a place in the file; path names the value in
// the plan ("pools[1].settings.ami"), empty when the problem has none (YAML
// syntax). A plan built from values has no file positions: its errors carry
// only the path.
func (d *decoder) errorf(path string, at yamlPos, hint, format string, args ...any) {
	line, col := at.Line, at.Col
	if line < 1 {
		line = 1
	}
	if d.noPos {
		line, col = 0, 0
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// document parses data into its single top-level mapping, or reports why it
// cannot and returns nil.
func (d *decoder) document(data []byte) *yaml.Node {
	start := yamlPos{1, 1}
	if len(bytes.TrimSpace(data)) == 0 {
		d.errorf("", start, `start with "version: 1", a "cluster:" and a "pools:" list`, "empty plan file")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := d.decodeYAML(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf("", start, `start with "version: 1", a "cluster:" and a "pools:" list`, "empty plan file (only comments)")
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := d.decodeYAML(dec, &next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.errorf("", posOf(&next), "a plan file holds one document; remove the \"---\" and what follows, or split it into several plans", "more than one YAML document")
		return nil
	}
	if len(doc.Content) == 0 {
		d.errorf("", start, `start with "version: 1", a "cluster:" and a "pools:" list`, "empty plan file")
		return nil
	}
	root := doc.Content[0]
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		d.errorf("", posOf(root), `start with "version: 1", a "cluster:" and a "pools:" list`, "empty plan file")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.errorf("", posOf(root), "a plan is a mapping with version, cluster, ssh, state and pools", "plan must be a mapping, got %s", describe(root))
		return nil
	}
	return root
}

// decodeYAML guards against panics inside the YAML library on hostile input:
// a plan loader must answer with an error, never crash the CLI or the
// autoscaler that reloads the plan.
func (d *decoder) decodeYAML(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns the YAML library's "yaml: line N: msg" into an *Error;
// the library gives no column.
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n >= 1 {
			line = n
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.errorf("", yamlPos{Line: line}, "", "invalid YAML: %s", msg)
}

var bigInt = regexp.MustCompile(`^[-+]?[0-9_]+$`)

var (
	settingsType = reflect.TypeOf(providers.Settings(nil))
	durationType = reflect.TypeOf(Duration(0))
)

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// value decodes n into v, recording positions and reporting mismatches. The
// caller has recorded n's own position under path.
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value) {
	n = d.resolve(n)
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	t := v.Type()
	switch {
	case t == settingsType:
		m, ok := d.free(path, n).(map[string]any)
		if !ok {
			if n.Kind != yaml.MappingNode {
				d.mismatch(path, n, "a mapping of provider settings")
			}
			return
		}
		v.Set(reflect.ValueOf(providers.Settings(m)))
	case t == durationType:
		dur, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || err != nil || dur < 0 {
			d.mismatch(path, n, `a duration such as "30s", "10m" or "1h30m"`)
			return
		}
		v.SetInt(int64(dur))
	case t.Kind() == reflect.Struct:
		d.structure(path, n, v)
	case t.Kind() == reflect.Pointer:
		elem := reflect.New(t.Elem())
		d.value(path, n, elem.Elem())
		v.Set(elem)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.mismatch(path, n, "a list")
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.record(p, nil, item)
			d.value(p, item, s.Index(i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			d.mismatch(path, n, "a mapping of names to values")
			return
		}
		m := reflect.MakeMap(t)
		for _, kv := range d.pairs(path, n) {
			p := join(path, kv.name)
			d.record(p, kv.key, kv.val)
			val := d.resolve(kv.val)
			if val == nil {
				continue
			}
			if val.Kind != yaml.ScalarNode {
				d.mismatch(p, val, "a string")
				continue
			}
			s := val.Value
			if val.ShortTag() == "!!null" {
				s = ""
			}
			m.SetMapIndex(reflect.ValueOf(kv.name).Convert(t.Key()), reflect.ValueOf(s).Convert(t.Elem()))
		}
		v.Set(m)
	case t.Kind() == reflect.String:
		// Any scalar reads as its text: "name: 2024" means the string "2024",
		// which is what a user writing a name or a host means.
		if n.Kind != yaml.ScalarNode {
			d.mismatch(path, n, "a string")
			return
		}
		v.SetString(n.Value)
	case t.Kind() == reflect.Int:
		var i int64
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && bigInt.MatchString(n.Value) {
			// YAML reads an integer too big for int64 as a float.
			d.errorf(path, posOf(n), "", "%s: integer %s is out of range", path, n.Value)
			d.bad[path] = true
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.mismatch(path, n, "an integer")
			return
		}
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.errorf(path, posOf(n), "", "%s: integer %s is out of range", path, n.Value)
			d.bad[path] = true
			return
		}
		v.SetInt(i)
	case t.Kind() == reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil {
			d.mismatch(path, n, "a number")
			return
		}
		v.SetFloat(f)
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.mismatch(path, n, "true or false")
			return
		}
		v.SetBool(b)
	default:
		// A field type the model gained without teaching the decoder: a bug
		// here, reported at the value so the user is not left guessing.
		d.errorf(path, posOf(n), "this is a bug in provision; please report it", "%s: cannot decode into %s", path, t)
		d.bad[path] = true
	}
}

func (d *decoder) mismatch(path string, n *yaml.Node, want string) {
	d.errorf(path, posOf(n), "", "%s: expected %s, got %s", label(path), want, describe(n))
	d.bad[path] = true
}

// label names a path in messages; the top level has none.
func label(path string) string {
	if path == "" {
		return "plan"
	}
	return path
}

// resolve follows aliases and charges the node budget; nil means the budget
// is spent (and that was reported).
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.budget--
	if d.budget == 0 {
		d.errorf("", posOf(n), "check anchors and aliases (&name, *name): they expand to a very large document", "plan is too large")
	}
	if d.budget <= 0 {
		return nil
	}
	return n
}

func (d *decoder) record(path string, key, val *yaml.Node) {
	p := position{Val: posOf(val)}
	if key != nil {
		p.Key = posOf(key)
	}
	if r := val; r.Kind == yaml.AliasNode && r.Alias != nil {
		r = r.Alias
		p.Null = r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null"
	} else {
		p.Null = r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null"
	}
	d.pos[path] = p
}

type pair struct {
	name     string
	key, val *yaml.Node
}

// pairs lists a mapping's entries with merge keys ("<<: *base") expanded:
// keys written in the mapping win over merged ones, as YAML specifies, and a
// key written twice is an error rather than a silent last-one-wins.
func (d *decoder) pairs(path string, n *yaml.Node) []pair {
	var own, merged []pair
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		rk := d.resolve(k)
		if rk == nil {
			return nil
		}
		if rk.Kind == yaml.ScalarNode && rk.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(path, val)...)
			continue
		}
		if rk.Kind != yaml.ScalarNode {
			d.errorf(path, posOf(k), "", "%s: keys must be plain names, got %s", label(path), describe(rk))
			continue
		}
		name := rk.Value
		if rk.ShortTag() == "!!null" {
			name = ""
		}
		if prev, dup := first[name]; dup {
			d.errorf(join(path, name), posOf(k), "remove one of them", "%s: duplicate key %q (first at line %d)", label(path), name, prev.Line)
			continue
		}
		first[name] = k
		own = append(own, pair{name, k, val})
	}
	for _, m := range merged {
		if _, ok := first[m.name]; !ok {
			first[m.name] = m.key
			own = append(own, m)
		}
	}
	return own
}

func (d *decoder) merge(path string, val *yaml.Node) []pair {
	rv := d.resolve(val)
	if rv == nil {
		return nil
	}
	switch rv.Kind {
	case yaml.MappingNode:
		return d.pairs(path, rv)
	case yaml.SequenceNode:
		// Earlier mappings in a merge list win over later ones.
		var out []pair
		seen := map[string]bool{}
		for _, item := range rv.Content {
			ri := d.resolve(item)
			if ri == nil {
				return out
			}
			if ri.Kind != yaml.MappingNode {
				d.errorf(path, posOf(item), "", "%s: \"<<\" merges mappings, got %s", label(path), describe(ri))
				continue
			}
			for _, p := range d.pairs(path, ri) {
				if !seen[p.name] {
					seen[p.name] = true
					out = append(out, p)
				}
			}
		}
		return out
	default:
		d.errorf(path, posOf(val), "", "%s: \"<<\" merges mappings, got %s", label(path), describe(rv))
		return nil
	}
}

// field is a struct field as the YAML sees it.
type field struct {
	name  string
	index int
}

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || tag == "-" || tag == "" {
			continue
		}
		out = append(out, field{tag, i})
	}
	return out
}

func (d *decoder) structure(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(path, n, "a mapping")
		return
	}
	fields := fieldsOf(v.Type())
	names := make([]string, len(fields))
	for j, f := range fields {
		names[j] = f.name
	}
	written := map[string]bool{}
	var meant []string
	for _, kv := range d.pairs(path, n) {
		i := slicesIndex(fields, kv.name)
		if i < 0 {
			hint := unknownHint(kv.name, names, "valid fields")
			if s := suggest(kv.name, names); s != "" {
				meant = append(meant, s)
			}
			d.errorf(join(path, kv.name), posOf(kv.key), hint, "%s: unknown field %q", label(path), kv.name)
			continue
		}
		p := join(path, kv.name)
		written[kv.name] = true
		d.record(p, kv.key, kv.val)
		d.value(p, kv.val, v.Field(fields[i].index))
	}
	// "clustr:" already says what is wrong; "cluster.name: required" on top
	// of it would send the user after a second, imaginary problem.
	for _, name := range meant {
		if !written[name] {
			d.bad[join(path, name)] = true
		}
	}
}

func slicesIndex(fields []field, name string) int {
	for i, f := range fields {
		if f.name == name {
			return i
		}
	}
	return -1
}

// free decodes provider settings without a schema: providers check them
// later, and point at them through Plan.ErrorAt using the positions kept here.
func (d *decoder) free(path string, n *yaml.Node) any {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for _, kv := range d.pairs(path, n) {
			p := join(path, kv.name)
			d.record(p, kv.key, kv.val)
			m[kv.name] = d.free(p, kv.val)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.record(p, nil, item)
			s[i] = d.free(p, item)
		}
		return s
	case yaml.ScalarNode:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(path, posOf(n), "", "%s: %v", label(path), strings.TrimPrefix(err.Error(), "yaml: "))
			d.bad[path] = true
			return nil
		}
		return x
	}
	return nil
}

// describe names what the user wrote, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	switch n.ShortTag() {
	case "!!str":
		return "string " + strconv.Quote(v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	case "!!null":
		return "nothing"
	default:
		return fmt.Sprintf("%s %s", n.ShortTag(), strconv.Quote(v))
	}
}

// unknownHint suggests the closest valid name, or lists them all when none
// is close: "did you mean \"count\"?".
func unknownHint(got string, valid []string, what string) string {
	if best := suggest(got, valid); best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	sorted := append([]string(nil), valid...)
	sort.Strings(sorted)
	return what + ": " + strings.Join(sorted, ", ")
}

// suggest returns the valid name closest to got, if it is close enough to
// be a typo of it.
func suggest(got string, valid []string) string {
	best, bestD := "", 1<<30
	for _, v := range valid {
		if dist := editDistance(strings.ToLower(got), v); dist < bestD {
			best, bestD = v, dist
		}
	}
	if best != "" && bestD <= 2 && bestD < len(got) {
		return best
	}
	return ""
}

// editDistance is the optimal-string-alignment distance: Levenshtein plus
// adjacent transpositions, the commonest typo ("hsot").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// expandPath resolves "~/" against the home directory and a relative path
// against the plan file's directory, so a plan means the same thing whatever
// directory provision runs from.
func expandPath(planFile, p string) (string, error) {
	switch {
	case p == "":
		return "", nil
	case p == "~" || strings.HasPrefix(p, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expand %q: %w", p, err)
		}
		return filepath.Join(home, p[1:]), nil
	case strings.HasPrefix(p, "~"):
		return "", fmt.Errorf("%q: ~user paths are not supported", p)
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	default:
		return filepath.Join(filepath.Dir(planFile), p), nil
	}
}
