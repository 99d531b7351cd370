package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/provisionhq/provision/providers"
)

// ErrDaemonUnreachable means the docker CLI could not talk to dockerd.
var ErrDaemonUnreachable = errors.New("docker daemon not reachable (start dockerd, e.g. `nohup dockerd >/tmp/dockerd.log 2>&1 &`)")

// commandTimeout bounds one docker CLI call that has no earlier deadline, so
// a wedged daemon cannot hang an apply forever.
const commandTimeout = 2 * time.Minute

// runner runs one program with arguments and an optional stdin and returns
// its stdout. Arguments are never secret by construction: secrets go over
// stdin. Tests swap in a recording runner to prove that.
type runner interface {
	run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error)
}

// execRunner runs real programs with os/exec.
type execRunner struct{}

func (execRunner) run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, commandTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second // do not wait forever on a child holding the pipes
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &cmdError{Args: append([]string{name}, args...), Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// cmdError is a failed command with its stderr, which is where the docker
// CLI says what went wrong.
type cmdError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *cmdError) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s: %s", strings.Join(e.Args[:min(len(e.Args), 3)], " "), msg)
}

func (e *cmdError) Unwrap() error { return e.Err }

// stderrOf returns a failed command's stderr, or "".
func stderrOf(err error) string {
	var ce *cmdError
	if errors.As(err, &ce) {
		return ce.Stderr
	}
	return ""
}

// The docker CLI reports these conditions only as text; this is the single
// place that reads that text and turns it into typed errors.
func isDaemonDown(err error) bool {
	s := stderrOf(err)
	return strings.Contains(s, "Cannot connect to the Docker daemon") ||
		strings.Contains(s, "Is the docker daemon running") ||
		strings.Contains(s, "error during connect")
}

func isNoSuch(err error) bool {
	s := stderrOf(err)
	return s != "" && allLines(s, func(l string) bool {
		return strings.Contains(l, "No such container") || strings.Contains(l, "No such object") ||
			strings.Contains(l, "No such network") || strings.Contains(l, "not found")
	})
}

func allLines(s string, ok func(string) bool) bool {
	for _, l := range strings.Split(s, "\n") {
		// `docker network rm` appends its own "exit status 1" line.
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "exit status") && !ok(l) {
			return false
		}
	}
	return true
}

// classify wraps a docker CLI failure in the kind the engine acts on.
func classify(err error, pool string) error {
	if err == nil {
		return nil
	}
	if isDaemonDown(err) {
		return fmt.Errorf("%w: %v", ErrDaemonUnreachable, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	s := stderrOf(err)
	if strings.Contains(s, "No such image") || strings.Contains(s, "invalid reference format") ||
		strings.Contains(s, "invalid argument") || strings.Contains(s, "Minimum memory limit") ||
		strings.Contains(s, "Range of CPUs") {
		return &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "docker", Pool: pool, Message: err.Error()}
	}
	return err
}
