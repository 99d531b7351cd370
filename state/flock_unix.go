//go:build unix && !aix

package state

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errWouldBlock: the lock is held by another open file description.
var errWouldBlock = errors.New("lock held elsewhere")

// flockTry takes an exclusive flock(2) on f without waiting.
//
// flock locks belong to the open file description, so a second open of the
// same file conflicts even inside one process, and the kernel drops the lock
// when the last descriptor closes — including when the process is killed
// with SIGKILL. A crashed apply therefore never leaves a stale lock behind;
// the lock file's contents (who held it) are informational only.
func flockTry(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errWouldBlock
		default:
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

func flockRelease(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), err)
	}
	return nil
}

// syncDir makes a rename in dir durable: without it a power loss can undo
// the rename even though the file's data was synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
