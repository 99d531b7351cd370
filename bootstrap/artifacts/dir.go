package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// dirSource takes the binaries from Options.Dir/bin, e.g. a bundle built
// elsewhere or binaries an operator compiled. A symlink to another file in
// bin/ (a multi-call binary) stays a symlink; any other symlink is
// followed and its file copied.
type dirSource struct {
	o     Options
	files []dirFile // from key, reused by gather
}

// dirFile is one file dirSource copies.
type dirFile struct {
	name   string // in bin/
	target string // symlink within bin/: its target; "" for a file
	sha256 string // file: its content's
}

// key hashes every input file, so a changed binary makes a new bundle.
func (s *dirSource) key(context.Context) (string, error) {
	files, err := s.scan()
	if err != nil {
		return "", err
	}
	s.files = files
	parts := []string{SourceDir, strconv.Itoa(bundleFormat), s.o.Version}
	for _, f := range files {
		parts = append(parts, f.name, f.target, f.sha256)
	}
	return keyOf(parts...), nil
}

// scan lists the files to copy: the required binaries and the files their
// symlinks point at, checking all are there.
func (s *dirSource) scan() ([]dirFile, error) {
	src := filepath.Join(s.o.Dir, binDir)
	var (
		files   []dirFile
		missing []string
		seen    = make(map[string]bool)
	)
	var visit func(name string) error
	visit = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		p := filepath.Join(src, name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, name)
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if localName(target) {
				files = append(files, dirFile{name: name, target: target})
				return visit(target)
			}
			if fi, err = os.Stat(p); err != nil {
				return fmt.Errorf("bin/%s: %w", name, err)
			}
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("bin/%s in %s: not a file", name, s.o.Dir)
		}
		sum, err := FileSHA256(p)
		if err != nil {
			return err
		}
		files = append(files, dirFile{name: name, sha256: sum})
		return nil
	}
	for _, name := range requiredBinaries {
		if err := visit(name); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, &MissingBinariesError{Dir: src, Names: missing}
	}
	return files, nil
}

func (s *dirSource) gather(ctx context.Context, bin string) (gathered, error) {
	if s.files == nil {
		if _, err := s.key(ctx); err != nil {
			return gathered{}, err
		}
	}
	s.o.Logger.Info("copying kubernetes binaries", "from", s.o.Dir)
	src := filepath.Join(s.o.Dir, binDir)
	for _, f := range s.files {
		dst := filepath.Join(bin, f.name)
		if f.target != "" {
			if err := os.Symlink(f.target, dst); err != nil {
				return gathered{}, err
			}
			continue
		}
		if err := copyFile(dst, filepath.Join(src, f.name), 0o755); err != nil {
			return gathered{}, err
		}
	}
	images, err := kubeadmImages(ctx, filepath.Join(bin, "kubeadm"), s.o.Version, s.o.Logger)
	if err != nil {
		return gathered{}, err
	}
	return gathered{images: images}, nil
}
