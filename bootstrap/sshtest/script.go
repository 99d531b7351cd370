// Package sshtest owns bootstrap's test fakes: an in-process SSH server with a
// given host key, public-key auth, scripted command replies, direct-tcpip
// forwarding (to test bastion hops) and unix socket forwarding (to reach a
// socket on the server's side), and a Runner that plays the same script
// without SSH. Replies are canned; nothing is executed.
package sshtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Reply is what a scripted command answers.
type Reply struct {
	Stdout string
	Stderr string
	Exit   int
	// Delay holds the reply back (until the session or ctx ends first),
	// to test timeouts and cancellation.
	Delay time.Duration
}

// Call is one command the script received.
type Call struct {
	User  string // login user (empty for Runner)
	Cmd   string // the command line as received
	Inner string // Cmd without the client's `sudo -n sh -c '...'` wrapper
	Stdin []byte
}

// Script maps command prefixes to replies and records every call. Safe for
// concurrent use.
type Script struct {
	mu    sync.Mutex
	rules []rule
	calls []Call
}

type rule struct {
	prefix  string
	replies []Reply          // returned in turn; the last one repeats
	fn      func(Call) Reply // instead of replies when set
}

// On answers commands starting with prefix (the longest matching prefix
// wins; commands wrapped in sudo are matched by their inner command). Several
// replies are returned in turn, the last one repeating.
func (s *Script) On(prefix string, replies ...Reply) *Script {
	if len(replies) == 0 {
		replies = []Reply{{}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, rule{prefix: prefix, replies: replies})
	return s
}

// OnFunc answers commands starting with prefix with fn's reply.
func (s *Script) OnFunc(prefix string, fn func(Call) Reply) *Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, rule{prefix: prefix, fn: fn})
	return s
}

// Calls returns the calls so far.
func (s *Script) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Commands returns the inner command of each call so far.
func (s *Script) Commands() []string {
	var out []string
	for _, c := range s.Calls() {
		out = append(out, c.Inner)
	}
	return out
}

// Handle records a call and returns its reply. An unscripted command exits
// 127 with a message naming it.
func (s *Script) Handle(c Call) Reply {
	c.Inner = unwrapSudo(c.Cmd)
	s.mu.Lock()
	s.calls = append(s.calls, c)
	best := -1
	for i, r := range s.rules {
		if strings.HasPrefix(c.Inner, r.prefix) && (best < 0 || len(r.prefix) >= len(s.rules[best].prefix)) {
			best = i
		}
	}
	if best < 0 {
		s.mu.Unlock()
		return Reply{Stderr: fmt.Sprintf("sshtest: no reply scripted for %q\n", c.Inner), Exit: 127}
	}
	r := &s.rules[best]
	if r.fn != nil {
		fn := r.fn
		s.mu.Unlock()
		return fn(c)
	}
	reply := r.replies[0]
	if len(r.replies) > 1 {
		r.replies = r.replies[1:]
	}
	s.mu.Unlock()
	return reply
}

// unwrapSudo undoes the client's `sudo -n sh -c '<quoted>'`.
func unwrapSudo(cmd string) string {
	const pfx = "sudo -n sh -c "
	if !strings.HasPrefix(cmd, pfx) {
		return cmd
	}
	q := cmd[len(pfx):]
	if len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' {
		return cmd
	}
	return strings.ReplaceAll(q[1:len(q)-1], `'\''`, `'`)
}

// ExitError is what Runner returns for a non-zero exit.
type ExitError struct {
	Cmd    string
	Status int
	Stderr string
}

// ExitStatus makes the error recognizable by cluster.ExitStatus.
func (e *ExitError) ExitStatus() int { return e.Status }

func (e *ExitError) Error() string {
	return fmt.Sprintf("run %q: exit %d: %s", e.Cmd, e.Status, strings.TrimSpace(e.Stderr))
}

// Runner plays a Script as a cluster.Runner, without SSH.
type Runner struct{ Script *Script }

// Run implements cluster.Runner.
func (r Runner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	var in []byte
	if stdin != nil {
		var err error
		if in, err = io.ReadAll(stdin); err != nil {
			return err
		}
	}
	reply := r.Script.Handle(Call{Cmd: cmd, Stdin: in})
	if err := wait(ctx, reply.Delay); err != nil {
		return fmt.Errorf("run %q: %w", cmd, err)
	}
	if stdout != nil {
		io.Copy(stdout, bytes.NewBufferString(reply.Stdout))
	}
	if reply.Exit != 0 {
		return &ExitError{Cmd: cmd, Status: reply.Exit, Stderr: reply.Stderr}
	}
	return nil
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
