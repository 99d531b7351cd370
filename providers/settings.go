package providers

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Settings are a pool's provider-specific settings, as written in the plan.
type Settings map[string]any

// SettingError is one problem with one pool setting, found without
// credentials or network. The plan loader reports it at the setting's own
// file:line:col; the Pulumi provider on the property pools[i].settings.<Key>.
type SettingError struct {
	// Key is the path inside the settings: "instance_type",
	// "hosts[0].port"; empty for the settings as a whole.
	Key  string
	Msg  string
	Hint string // what to do about it; empty when Msg says it all
	// Unknown marks a key that is not a setting at all, so the error points
	// at the key rather than at its value.
	Unknown bool
}

func (e SettingError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Check is a provider's static settings check: it needs no credentials and
// no network, and returns every problem it finds (none when valid).
type Check func(Settings) []SettingError

// SettingErrors collects a provider's findings.
type SettingErrors []SettingError

// Add records a problem with the value at key.
func (l *SettingErrors) Add(key, hint, format string, args ...any) {
	*l = append(*l, SettingError{Key: key, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// Has reports whether key (or a key inside it) already has a problem, so a
// value that did not decode is not also reported as missing.
func (l SettingErrors) Has(key string) bool {
	for _, e := range l {
		if e.Key == key || strings.HasPrefix(e.Key, key+".") || strings.HasPrefix(e.Key, key+"[") {
			return true
		}
	}
	return false
}

// Err is the findings as one error wrapping ErrInvalidSpec, for the live
// provider's Create; nil when there are none.
func (l SettingErrors) Err(provider string) error {
	if len(l) == 0 {
		return nil
	}
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%w: %s settings: %s", ErrInvalidSpec, provider, strings.Join(msgs, "; "))
}

// Decode fills out (a pointer to a provider's settings struct, with json
// tags) from the settings. Unknown keys and values of the wrong type are
// reported with their path; what did decode is kept, so a provider's own
// checks can run on the rest and every problem surfaces in one pass.
// Numbers are accepted for integer fields when they are whole: Pulumi hands
// every number over as a float64.
func (s Settings) Decode(out any) SettingErrors {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("providers: Settings.Decode into %T, want a pointer to a struct", out))
	}
	var errs SettingErrors
	decodeValue(&errs, "", map[string]any(s), v.Elem())
	return errs
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func decodeValue(errs *SettingErrors, path string, in any, v reflect.Value) {
	if in == nil {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer:
		elem := reflect.New(t.Elem())
		n := len(*errs)
		decodeValue(errs, path, in, elem.Elem())
		if len(*errs) == n { // a value that did not decode stays unset
			v.Set(elem)
		}
	case reflect.Struct:
		m, ok := in.(map[string]any)
		if !ok {
			errs.Add(path, "", "expected a mapping, got %s", describe(in))
			return
		}
		fields := jsonFields(t)
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			i, ok := fields[k]
			if !ok {
				*errs = append(*errs, SettingError{Key: joinKey(path, k), Msg: fmt.Sprintf("unknown setting %q", k), Hint: unknownHint(k, names), Unknown: true})
				continue
			}
			decodeValue(errs, joinKey(path, k), m[k], v.Field(i))
		}
	case reflect.Slice:
		items, ok := in.([]any)
		if !ok {
			errs.Add(path, "", "expected a list, got %s", describe(in))
			return
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			decodeValue(errs, fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m, ok := in.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			errs.Add(path, "", "expected a mapping, got %s", describe(in))
			return
		}
		out := reflect.MakeMap(t)
		for k, item := range m {
			elem := reflect.New(t.Elem()).Elem()
			decodeValue(errs, joinKey(path, k), item, elem)
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
		v.Set(out)
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			errs.Add(path, "", "expected a string, got %s", describe(in))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			errs.Add(path, "", "expected true or false, got %s", describe(in))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f, ok := number(in)
		if !ok || f != math.Trunc(f) {
			errs.Add(path, "", "expected an integer, got %s", describe(in))
			return
		}
		if f < math.MinInt64 || f >= math.MaxInt64 || v.OverflowInt(int64(f)) {
			errs.Add(path, "", "integer %s is out of range", describe(in))
			return
		}
		v.SetInt(int64(f))
	case reflect.Float32, reflect.Float64:
		f, ok := number(in)
		if !ok {
			errs.Add(path, "", "expected a number, got %s", describe(in))
			return
		}
		v.SetFloat(f)
	default:
		// A settings field type this decoder was never taught: a bug.
		errs.Add(path, "this is a bug in provision; please report it", "cannot decode into %s", t)
	}
}

// jsonFields maps a struct's json names to field indexes.
func jsonFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = i
	}
	return out
}

// number reads the numbers the plan loader (int, uint64, float64) and Pulumi
// (float64) produce.
func number(in any) (float64, bool) {
	switch n := in.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// describe names what the user wrote, the same way whether it came from
// YAML (ints) or Pulumi (float64s).
func describe(in any) string {
	switch x := in.(type) {
	case nil:
		return "nothing"
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return "string " + strconv.Quote(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	if f, ok := number(in); ok {
		return "number " + strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprintf("%T", in)
}

// unknownHint suggests the closest setting, or lists them all.
func unknownHint(got string, valid []string) string {
	best, bestD := "", 1<<30
	for _, v := range valid {
		if d := editDistance(strings.ToLower(got), v); d < bestD {
			best, bestD = v, d
		}
	}
	if best != "" && bestD <= 2 && bestD < len(got) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "valid settings: " + strings.Join(valid, ", ")
}

// editDistance is the Levenshtein distance plus adjacent transpositions.
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
