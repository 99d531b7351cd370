// Command provision creates container-host clusters from a plan.yaml: it
// makes the machines on any provider, bootstraps them over verified SSH and
// joins them to a cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Ctrl-C cancels the run's context: pipelines stop at their next step,
	// state keeps what was done, and the next `up` resumes from there.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		return
	}
	var exit *exitCode
	if errors.As(err, &exit) {
		os.Exit(exit.code)
	}
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "interrupted: state holds what was done; run the same command again to resume")
		os.Exit(130)
	}
	os.Exit(1)
}

// exitCode carries a remote command's exit status out of `provision ssh`.
type exitCode struct{ code int }

func (e *exitCode) Error() string { return fmt.Sprintf("exit status %d", e.code) }
