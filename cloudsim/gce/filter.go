package gce

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// filter is the subset of GCE's list filter syntax provision uses: terms
// `field = "value"` or `field != "value"` on name, status or labels.KEY,
// joined by AND or by juxtaposition, each optionally in parentheses.
type filter []term

type term struct {
	field, value string
	negate       bool
}

var termRE = regexp.MustCompile(`^\(?\s*(name|status|labels\.[a-z0-9_-]+)\s*(=|!=|eq|ne)\s*("([^"]*)"|[^\s()"]+)\s*\)?`)

func parseFilter(s string) (filter, error) {
	var f filter
	s = strings.TrimSpace(s)
	for s != "" {
		m := termRE.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("cloudsim cannot parse filter at %q", s)
		}
		v := m[3]
		if strings.HasPrefix(v, `"`) {
			v = m[4]
		}
		f = append(f, term{field: m[1], value: v, negate: m[2] == "!=" || m[2] == "ne"})
		s = strings.TrimSpace(s[len(m[0]):])
		if rest, ok := strings.CutPrefix(s, "AND "); ok {
			s = strings.TrimSpace(rest)
		}
	}
	return f, nil
}

// match reports whether a resource passes every term; field reads the
// resource's value of a field name.
func (f filter) match(field func(string) string) bool {
	for _, t := range f {
		if (field(t.field) == t.value) == t.negate {
			return false
		}
	}
	return true
}

// instanceField reads an instance's filterable fields.
func instanceField(in *computepb.Instance) func(string) string {
	return func(name string) string {
		switch {
		case name == "name":
			return in.GetName()
		case name == "status":
			return in.GetStatus()
		default:
			return in.GetLabels()[strings.TrimPrefix(name, "labels.")]
		}
	}
}

// paginate serves one page; the page token is the offset of the next item.
func paginate[T any](all []T, maxResults, pageToken string) ([]T, *string, *refusal) {
	size := 500
	if maxResults != "" {
		n, err := strconv.Atoi(maxResults)
		if err != nil || n < 0 || n > 500 {
			return nil, nil, invalid("maxResults", maxResults, "Must be between 0 and 500.")
		}
		if n > 0 {
			size = n
		}
	}
	start := 0
	if pageToken != "" {
		n, err := strconv.Atoi(pageToken)
		if err != nil || n < 0 || n > len(all) {
			return nil, nil, invalid("pageToken", pageToken, "Invalid page token.")
		}
		start = n
	}
	end := min(start+size, len(all))
	var next *string
	if end < len(all) {
		next = proto.String(strconv.Itoa(end))
	}
	return all[start:end], next, nil
}

func sortInstances(ins []*computepb.Instance) {
	sort.Slice(ins, func(i, j int) bool {
		if zi, zj := ins[i].GetZone(), ins[j].GetZone(); zi != zj {
			return zi < zj
		}
		return ins[i].GetName() < ins[j].GetName()
	})
}

func sortStrings(s []string) { sort.Strings(s) }

func lastSegment(link string) string { return link[strings.LastIndex(link, "/")+1:] }

// ioCopy reads a request body, capped at GCE's 10 MB request limit.
func ioCopy(w io.Writer, r *http.Request) (int64, error) {
	return io.Copy(w, io.LimitReader(r.Body, 10<<20))
}
