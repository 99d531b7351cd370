package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Names of the files a File backend keeps in its directory.
const (
	stateName  = "state.json"
	backupName = "state.json.backup"
	lockName   = "state.lock"
	tempSuffix = ".tmp-*" // os.CreateTemp pattern; leftovers are ignored by Read
)

// File is the default Backend: one directory per plan holding state.json,
// the previous version in state.json.backup, and state.lock, locked with
// flock(2).
type File struct {
	dir string

	writeMu sync.Mutex // one Write at a time from this process

	mu   sync.Mutex
	held map[string]*os.File // lock id → the open lock file holding the flock
}

// NewFile returns a backend storing state in dir, created (0700) on the
// first Write or Lock.
func NewFile(dir string) *File {
	return &File{dir: dir, held: map[string]*os.File{}}
}

var _ Backend = (*File)(nil)

// Dir is the directory the backend stores its files in.
func (f *File) Dir() string { return f.dir }

func (f *File) path(name string) string { return filepath.Join(f.dir, name) }

// Read returns the stored state, migrated to Version; a missing state.json
// is a new empty State. A corrupt one is an error, never an empty state:
// an empty state would make the next apply forget machines that exist.
func (f *File) Read(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s, _, err := f.load()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return Empty(), nil
	}
	return s, nil
}

// load returns the stored state and its raw bytes, or nils when none.
func (f *File) load() (*State, []byte, error) {
	p := f.path(stateName)
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read state: %w", err)
	}
	s, err := Decode(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w; %s", p, err, f.restoreHint())
	}
	return s, raw, nil
}

// restoreHint tells how to get a readable state back when state.json is
// not: the backup is the version before the last write, so restoring it
// loses at most that write (the next up adopts or replaces its machines).
func (f *File) restoreHint() string {
	b := f.path(backupName)
	raw, err := os.ReadFile(b)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "there is no backup (" + b + "); do not delete state.json: fix it by hand, or ask for help, since an empty state forgets every machine"
	case err != nil:
		return fmt.Sprintf("its backup %s cannot be read either: %v", b, err)
	}
	if _, err := Decode(raw); err != nil {
		return fmt.Sprintf("its backup %s is damaged too (%v)", b, err)
	}
	return fmt.Sprintf("restore the previous version with: cp %s %s", shellQuote(b), shellQuote(f.path(stateName)))
}

// shellQuote quotes a path for a copy-paste command line.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Write stores s atomically: the new document goes to a synced temp file
// renamed over state.json, after the old document was saved (the same way)
// as state.json.backup. state.json is never absent or half-written, even
// if the process dies at any point. On success s.Serial and s.Version are
// updated; a stale s (see ErrStale) is refused.
func (f *File) Write(ctx context.Context, s *State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()

	stored, oldRaw, err := f.load()
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	next, err := Next(stored, s)
	if err != nil {
		return fmt.Errorf("write state %s: %w", f.path(stateName), err)
	}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: encode: %w", err)
	}
	data = append(data, '\n')

	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	// Copy rather than rename the old file to .backup: a rename would leave
	// a moment with no state.json, and a crash then would look like an empty
	// state.
	if oldRaw != nil {
		if err := f.writeAtomic(backupName, oldRaw); err != nil {
			return fmt.Errorf("write state backup: %w", err)
		}
	}
	if err := f.writeAtomic(stateName, data); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	Commit(s, next)
	return nil
}

// writeAtomic replaces dir/name with data via a synced 0600 temp file in
// the same directory (so the rename cannot cross filesystems).
func (f *File) writeAtomic(name string, data []byte) (err error) {
	tmp, err := os.CreateTemp(f.dir, name+tempSuffix) // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil { // CreateTemp's mode is 0600, but say it
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path(name)); err != nil {
		return err
	}
	return syncDir(f.dir)
}

// Lock takes the flock on state.lock without waiting and writes info into
// the file, so that a second process failing to lock can name the holder
// in its *LockError. The lock lasts until Unlock or until this process
// exits, however it exits. An empty info.ID gets a fresh one.
func (f *File) Lock(ctx context.Context, info LockInfo) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("lock state: %w", err)
	}
	if info.ID == "" {
		info.ID = NewLineage()
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return "", fmt.Errorf("lock state: %w", err)
	}
	// The lock file is never removed on Unlock: removing it would let one
	// process lock the old inode while another creates and locks a new one.
	lf, err := os.OpenFile(f.path(lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("lock state: %w", err)
	}
	if err := flockTry(lf); err != nil {
		if errors.Is(err, errWouldBlock) {
			holder := readHolder(lf)
			lf.Close()
			return "", &LockError{Info: holder}
		}
		lf.Close()
		return "", fmt.Errorf("lock state: %w", err)
	}
	if err := writeHolder(lf, info); err != nil {
		flockRelease(lf)
		lf.Close()
		return "", fmt.Errorf("lock state: record holder in %s: %w", lf.Name(), err)
	}
	f.mu.Lock()
	f.held[info.ID] = lf
	f.mu.Unlock()
	return info.ID, nil
}

// Unlock releases the lock taken with id. It ignores ctx: it typically
// runs deferred after an interrupt cancelled ctx, and must release anyway.
func (f *File) Unlock(_ context.Context, id string) error {
	f.mu.Lock()
	lf, ok := f.held[id]
	delete(f.held, id)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("unlock state in %s: id %q: %w", f.dir, id, ErrNotLocked)
	}
	// Clear the holder first so nobody reads stale info after we let go.
	err := errors.Join(lf.Truncate(0), flockRelease(lf), lf.Close())
	if err != nil {
		return fmt.Errorf("unlock state in %s: %w", f.dir, err)
	}
	return nil
}

func writeHolder(lf *os.File, info LockInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := lf.Truncate(0); err != nil {
		return err
	}
	if _, err := lf.WriteAt(append(data, '\n'), 0); err != nil {
		return err
	}
	return lf.Sync()
}

// readHolder reads who holds the lock. The holder writes its info right
// after taking the flock, so an empty file means "just being taken": look
// again a few times, briefly, then report the holder as unknown.
func readHolder(lf *os.File) LockInfo {
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		data, err := io.ReadAll(io.NewSectionReader(lf, 0, 1<<16))
		if err != nil {
			return LockInfo{}
		}
		var info LockInfo
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&info); err == nil && info.ID != "" {
			return info
		}
	}
	return LockInfo{}
}

// Destroy removes state.json, its backup, leftover temp files and the lock
// file, then the directory if nothing else is in it: other files there
// (a generated ssh key…) belong to the caller. Callers hold the lock; if
// this File holds none, Destroy takes it for the duration, so it never
// deletes a state another process is applying.
func (f *File) Destroy(ctx context.Context) error {
	f.mu.Lock()
	holding := len(f.held) > 0
	f.mu.Unlock()
	if !holding {
		id, err := f.Lock(ctx, NewLockInfo("destroy"))
		if err != nil {
			return fmt.Errorf("destroy state: %w", err)
		}
		defer f.Unlock(ctx, id)
	}

	temps, _ := filepath.Glob(filepath.Join(f.dir, "*"+tempSuffix))
	names := append([]string{f.path(stateName), f.path(backupName), f.path(lockName)}, temps...)
	var errs []error
	for _, p := range names {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy state: %w", err)
	}
	// Remove fails on a non-empty directory, which is exactly the rule.
	if err := os.Remove(f.dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(f.dir) {
		return fmt.Errorf("destroy state: %w", err)
	}
	return nil
}

func isNotEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) > 0
}
