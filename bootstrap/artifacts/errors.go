package artifacts

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of gather failure callers act on, classified with errors.Is.
var (
	// ErrInvalidOptions: Options that can never gather (a malformed version,
	// an unknown source). Retrying does not help; fix the plan.
	ErrInvalidOptions = errors.New("invalid artifacts options")
	// ErrNoToolchain: the source needs the Go toolchain and `go` is not on
	// PATH. Another source (release, dir) avoids it.
	ErrNoToolchain = errors.New("no Go toolchain")
	// ErrChecksum: a downloaded file does not match its published checksum.
	// Nothing was cached; never retried silently (it may be tampering).
	ErrChecksum = errors.New("checksum mismatch")
	// ErrNotFound: a release file does not exist (HTTP 404), usually a
	// version the release site does not have.
	ErrNotFound = errors.New("release file not found")
	// ErrMissingBinaries: a dir source lacks some of the binaries a node
	// needs. errors.As with *MissingBinariesError gives their names.
	ErrMissingBinaries = errors.New("missing binaries")
)

// MissingBinariesError lists every binary a dir source lacks, so one run
// tells the operator all that is missing. errors.Is(err, ErrMissingBinaries).
type MissingBinariesError struct {
	Dir   string   // the bin/ directory looked in
	Names []string // sorted
}

func (e *MissingBinariesError) Error() string {
	return fmt.Sprintf("%v in %s: %s", ErrMissingBinaries, e.Dir, strings.Join(e.Names, ", "))
}

func (e *MissingBinariesError) Is(target error) bool { return target == ErrMissingBinaries }
