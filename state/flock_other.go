//go:build !unix || aix

package state

import (
	"errors"
	"fmt"
	"os"
)

// The file backend's locking relies on flock(2), which Windows lacks (and
// x/sys/unix on AIX). Those platforms compile but cannot lock, so a file
// backend there refuses to apply rather than apply unlocked.

var errWouldBlock = errors.New("lock held elsewhere")

func flockTry(f *os.File) error {
	return fmt.Errorf("lock %s: %w", f.Name(), errors.ErrUnsupported)
}

func flockRelease(*os.File) error { return nil }

func syncDir(string) error { return nil }
