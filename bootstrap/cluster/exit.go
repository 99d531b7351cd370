package cluster

import "errors"

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
