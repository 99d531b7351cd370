package bootstrap

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// shRunner runs commands in a local sh with PATH = dir first, so a test puts
// fake dockerd and dpkg there: the check's shell is run for real, not
// matched by prefix.
type shRunner struct{ dir string }

func (r shRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = []string{"PATH=" + r.dir + ":/usr/bin:/bin"}
	c.Stdin, c.Stdout = stdin, stdout
	var stderr bytes.Buffer
	c.Stderr = &stderr
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return &ExitError{Cmd: cmd, Status: ee.ExitCode(), Stderr: stderr.String()}
	}
	return err
}

// TestRuntimeInstalledWaitsForDpkg: install-runtime is done when dockerd
// is there and, on apt machines, dpkg has nothing half installed; an
// install cut off with its connection has unpacked dockerd but is still
// configuring (or was stopped), and must not be taken for done.
func TestRuntimeInstalledWaitsForDpkg(t *testing.T) {
	t.Parallel()
	const halfConfigured = "The following packages are only half configured, probably due to problems\nconfiguring them the first time.\n docker.io            Linux container runtime\n"
	tests := []struct {
		name    string
		family  Family
		dockerd bool
		audit   string // what the fake dpkg --audit prints; no dpkg at all when "-"
		want    bool
	}{
		{name: "installed and configured", family: FamilyApt, dockerd: true, want: true},
		{name: "unpacked, still being configured", family: FamilyApt, dockerd: true, audit: halfConfigured},
		{name: "not installed", family: FamilyApt},
		{name: "dnf machine without dpkg", family: FamilyDnf, dockerd: true, audit: "-", want: true},
		{name: "dnf machine without dockerd", family: FamilyDnf, audit: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write := func(name, script string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.dockerd {
				write("dockerd", "exit 0\n")
			}
			switch tt.audit {
			case "-":
				// No dpkg on the machine: PATH's /usr/bin one must not be
				// asked either, which a dnf machine's check never does.
				write("dpkg", "echo 'dpkg asked on a dnf machine'\nexit 1\n")
			default:
				write("dpkg", "test \"$1\" = --audit || exit 2\nprintf '%s' '"+tt.audit+"'\n")
			}
			h := &Host{Name: "m-1", OS: OSInfo{Family: tt.family}, Run: shRunner{dir: dir}}
			got, err := runtimeInstalled(t.Context(), h)
			if err != nil || got != tt.want {
				t.Fatalf("runtimeInstalled = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
