package ec2

import (
	"maps"
	"net/url"
	"slices"
	"strings"
)

// filter is one Filter.N of a Describe call: a name and the values any of
// which may match.
type filter struct {
	name   string
	values []string
}

// fields answers a filter name with the values a resource has for it;
// ok is false for a filter name the action does not know.
type fields func(name string) (have []string, ok bool)

// parseFilters reads Filter.N.Name / Filter.N.Value.M and refuses names
// the action does not know (probe answers for a zero resource).
func parseFilters(f url.Values, probe fields) ([]filter, *apiError) {
	var out []filter
	for _, g := range indexedGroups(f, "Filter") {
		flt := filter{name: g.Get("Name"), values: indexed(g, "Value")}
		if _, ok := probe(flt.name); !ok {
			return nil, errClient("InvalidParameterValue", "The filter '%s' is invalid", flt.name)
		}
		out = append(out, flt)
	}
	return out, nil
}

// matches reports whether a resource passes every filter (filters AND,
// values of one filter OR, as EC2 combines them).
func matches(filters []filter, have fields) bool {
	for _, flt := range filters {
		vals, _ := have(flt.name)
		if !anyMatch(flt.values, vals) {
			return false
		}
	}
	return true
}

// tagFields answers the tag filters every taggable resource has: tag:K,
// tag-key and tag-value.
func tagFields(tags map[string]string, name string) ([]string, bool) {
	switch {
	case name == "tag-key":
		return slices.Sorted(maps.Keys(tags)), true
	case name == "tag-value":
		return slices.Sorted(maps.Values(tags)), true
	case strings.HasPrefix(name, "tag:"):
		if v, ok := tags[strings.TrimPrefix(name, "tag:")]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	return nil, false
}

// anyMatch reports whether any have value matches any pattern.
func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if wildcardMatch(p, h) {
				return true
			}
		}
	}
	return false
}

// wildcardMatch matches s against an EC2 filter value: * is any run of
// characters, ? any one character, and a backslash makes a following *, ?
// or \ literal (EC2's documented escapes). Every other character, [ and ]
// included, is itself.
func wildcardMatch(pattern, s string) bool {
	type tok struct {
		r    rune
		wild bool // * or ? as a wildcard
	}
	var toks []tok
	pr := []rune(pattern)
	for i := 0; i < len(pr); i++ {
		c := pr[i]
		switch {
		case c == '\\' && i+1 < len(pr) && (pr[i+1] == '*' || pr[i+1] == '?' || pr[i+1] == '\\'):
			i++
			toks = append(toks, tok{r: pr[i]})
		case c == '*' || c == '?':
			toks = append(toks, tok{r: c, wild: true})
		default:
			toks = append(toks, tok{r: c})
		}
	}
	sr := []rune(s)
	// Iterative glob match with backtracking to the last star.
	ti, si, star, mark := 0, 0, -1, 0
	for si < len(sr) {
		switch {
		case ti < len(toks) && toks[ti].wild && toks[ti].r == '*':
			star, mark = ti, si
			ti++
		case ti < len(toks) && ((toks[ti].wild && toks[ti].r == '?') || (!toks[ti].wild && toks[ti].r == sr[si])):
			ti++
			si++
		case star >= 0:
			ti = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti].wild && toks[ti].r == '*' {
		ti++
	}
	return ti == len(toks)
}
