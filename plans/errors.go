package plans

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a plan file, at the place the user has to edit.
type Error struct {
	File      string
	Line, Col int // 1-based; Col is 0 when only the line is known (YAML syntax errors); both 0 for a plan built from values
	// Path names the value in the plan with its YAML names:
	// "pools[1].settings.ami". Empty when the problem is not about one value
	// (YAML syntax, an empty file).
	Path string
	Msg  string
	Hint string // what to do about it; empty when the message says it all
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString(e.File)
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// ErrorList is every problem found in a plan, sorted by position, so a user
// fixes them all in one pass instead of one per run.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As(err, &*Error) find the first problem of a list.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// sorted orders the list by position (keeping insertion order for ties) and
// drops exact duplicates, which aliases in the YAML can produce.
func (l ErrorList) sorted() ErrorList {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Col < l[j].Col
	})
	seen := make(map[Error]bool, len(l))
	out := make(ErrorList, 0, len(l))
	for _, e := range l {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}

// Position is where the value at path was written in the plan file, for
// errors found after loading (a provider rejecting a pool's settings).
// Paths use the YAML names: "cluster.name", "pools[1].settings",
// "pools[1].settings.instance_type". An unknown path falls back to its
// nearest written ancestor, then to the top of the file.
func (p *Plan) Position(path string) (line, col int) {
	for {
		if at, ok := p.pos[path]; ok && at.Val.Line > 0 {
			if at.Null && at.Key.Line > 0 {
				return at.Key.Line, at.Key.Col
			}
			return at.Val.Line, at.Val.Col
		}
		if path == "" {
			if at := p.pos[""]; at.Val.Line == 0 && p.pos != nil {
				return 0, 0 // built from values: there is no file
			}
			return 1, 1
		}
		path = parent(path)
	}
}

// ErrorAt builds an *Error pointing at the value at path (see Position).
func (p *Plan) ErrorAt(path, msg, hint string) *Error {
	line, col := p.Position(path)
	return &Error{File: p.Path, Line: line, Col: col, Path: path, Msg: msg, Hint: hint}
}

// parent strips the last ".name" or "[i]" of a path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
