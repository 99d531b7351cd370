package cluster

import (
	"context"
	"errors"
	"io"
)

// ErrConnectionLost: the connection to the node broke under a command or a
// channel (the network or the peer dropped it, or keepalives went
// unanswered). The node may be fine. Whether the command ran, in full or in
// part, is unknown: the caller connects again and reruns the step, whose
// check tells what is done. Runners wrap it; a command that ran and failed
// is an exit status instead (ExitStatus).
var ErrConnectionLost = errors.New("connection lost")

// ExitStatus reports the status of a command that ran and exited non-zero,
// as opposed to one that could not run at all (connection lost, cancelled).
// Runners return errors with an `ExitStatus() int` method for the former.
func ExitStatus(err error) (status int, ok bool) {
	var e interface{ ExitStatus() int }
	if errors.As(err, &e) {
		return e.ExitStatus(), true
	}
	return 0, false
}

// Succeeds runs a check command on r: true when it exits 0, false when it
// exits otherwise ("not so"), an error only when it could not run at all.
func Succeeds(ctx context.Context, r Runner, cmd string) (bool, error) {
	err := r.Run(ctx, cmd, nil, io.Discard)
	if _, exited := ExitStatus(err); err != nil && !exited {
		return false, err
	}
	return err == nil, nil
}
