package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// goTool runs the local go command for the build source (and to compile
// pause for the release source).
type goTool struct {
	path string
	env  []string
}

// newGoTool finds go on PATH. Its environment is the caller's plus
// GOFLAGS=-mod=mod (the wrapper modules have no go.sum until tidied),
// static linux/amd64 output, and no go.work.
func newGoTool(ctx context.Context, why string) (*goTool, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("%w: %s (go is not on PATH)", ErrNoToolchain, why)
	}
	g := &goTool{path: p, env: os.Environ()}
	// GOFLAGS may come from `go env -w`, which a GOFLAGS variable would
	// override: start from the effective value.
	flags, err := g.run(ctx, "", "env", "GOFLAGS")
	if err != nil {
		return nil, err
	}
	g.env = append(g.env,
		"GOFLAGS="+strings.TrimSpace(strings.TrimSpace(string(flags))+" -mod=mod"),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off")
	return g, nil
}

// run runs go with args in dir and returns its stdout (also on error). The
// error carries the tail of its stderr. Cancelling ctx kills go and the compilers it
// started.
func (g *goTool) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return g.runEnv(ctx, dir, nil, args...)
}

func (g *goTool) runEnv(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, g.path, args...)
	cmd.Dir = dir
	cmd.Env = append(g.env, env...)
	killProcessGroup(cmd)
	cmd.WaitDelay = processWaitDelay
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return stdout.Bytes(), fmt.Errorf("go %s: %w", args[0], context.Cause(ctx))
		}
		return stdout.Bytes(), fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// processWaitDelay bounds the wait for go's output pipes after it was
// killed, should a grandchild still hold them.
const processWaitDelay = 5 * time.Second

// moduleInfo is what `go mod download -json` says about a module version.
type moduleInfo struct {
	Path, Version string
	GoMod, Info   string // files in the module cache
	Error         string
}

// download fetches a module version into the module cache (through the
// module proxy, like any go build) and reads its go.mod.
func (g *goTool) download(ctx context.Context, dir, modVersion string) (moduleInfo, *modfile.File, error) {
	out, err := g.run(ctx, dir, "mod", "download", "-json", modVersion)
	var m moduleInfo
	if jerr := json.Unmarshal(out, &m); jerr != nil && err == nil {
		err = fmt.Errorf("go mod download %s: %w", modVersion, jerr)
	}
	if m.Error != "" {
		return m, nil, fmt.Errorf("go mod download %s: %s", modVersion, m.Error)
	}
	if err != nil {
		return m, nil, err
	}
	data, err := os.ReadFile(m.GoMod)
	if err != nil {
		return m, nil, err
	}
	f, err := modfile.Parse(m.GoMod, data, nil)
	if err != nil {
		return m, nil, err
	}
	return m, f, nil
}

// releaseTime is a module version's time from the module cache's .info
// file: the tag's commit time, used as the build date so that a rebuild
// gives the same binary.
func releaseTime(m moduleInfo) (string, error) {
	data, err := os.ReadFile(m.Info)
	if err != nil {
		return "", err
	}
	var info struct{ Time string }
	if err := json.Unmarshal(data, &info); err != nil {
		return "", fmt.Errorf("%s: %w", m.Info, err)
	}
	if info.Time == "" {
		return "", errors.New(m.Info + ": no time")
	}
	return info.Time, nil
}
