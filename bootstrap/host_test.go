package bootstrap_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/sshtest"
)

func TestDetectOS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		want    bootstrap.OSInfo
		wantErr error
	}{
		{file: "debian-12", want: bootstrap.OSInfo{ID: "debian", VersionID: "12", Family: bootstrap.FamilyApt}},
		{file: "ubuntu-24.04", want: bootstrap.OSInfo{ID: "ubuntu", IDLike: []string{"debian"}, VersionID: "24.04", Family: bootstrap.FamilyApt}},
		{file: "linuxmint-21", want: bootstrap.OSInfo{ID: "linuxmint", IDLike: []string{"ubuntu", "debian"}, VersionID: "21.3", Family: bootstrap.FamilyApt}},
		{file: "fedora-40", want: bootstrap.OSInfo{ID: "fedora", VersionID: "40", Family: bootstrap.FamilyDnf}},
		{file: "rocky-9", want: bootstrap.OSInfo{ID: "rocky", IDLike: []string{"rhel", "centos", "fedora"}, VersionID: "9.4", Family: bootstrap.FamilyDnf}},
		{file: "alpine-3.20", wantErr: bootstrap.ErrUnsupportedOS},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			content, err := os.ReadFile(filepath.Join("testdata", "os-release", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			script := (&sshtest.Script{}).On("cat /etc/os-release", sshtest.Reply{Stdout: string(content)})
			got, err := bootstrap.DetectOS(t.Context(), sshtest.Runner{Script: script})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "alpine 3.20.3") {
					t.Errorf("error %q does not name the OS", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.VersionID != tt.want.VersionID || got.Family != tt.want.Family || !slices.Equal(got.IDLike, tt.want.IDLike) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunSteps(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name        string
		checks      []bool // successive Check results
		checkErr    error
		applyErr    error
		wantApplied bool
		wantErr     error
	}{
		{name: "done is skipped", checks: []bool{true}},
		{name: "not done is applied", checks: []bool{false, true}, wantApplied: true},
		{name: "still not done after apply", checks: []bool{false, false}, wantApplied: true, wantErr: bootstrap.ErrStepNotDone},
		{name: "apply fails", checks: []bool{false}, applyErr: errBoom, wantApplied: true, wantErr: errBoom},
		{name: "check fails", checks: []bool{false}, checkErr: errBoom, wantErr: errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var checks int
			applied, after := false, false
			steps := []bootstrap.Step{
				{
					Name: "under-test",
					Check: func(context.Context, *bootstrap.Host) (bool, error) {
						done := tt.checks[min(checks, len(tt.checks)-1)]
						checks++
						return done, tt.checkErr
					},
					Apply: func(context.Context, *bootstrap.Host) error { applied = true; return tt.applyErr },
				},
				{
					Name:  "after",
					Check: func(context.Context, *bootstrap.Host) (bool, error) { return false, nil },
					Apply: func(context.Context, *bootstrap.Host) error { after = true; return nil },
				},
			}
			// "after" never reports done, so a passing run ends in ErrStepNotDone from it.
			err := bootstrap.RunSteps(t.Context(), &bootstrap.Host{Name: "m-1"}, steps)
			if applied != tt.wantApplied {
				t.Errorf("applied = %v, want %v", applied, tt.wantApplied)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "under-test") || !strings.Contains(err.Error(), "m-1") {
					t.Errorf("err = %v, want %v naming the step and machine", err, tt.wantErr)
				}
				if after {
					t.Error("a step after a failed one ran")
				}
				return
			}
			if !after || !errors.Is(err, bootstrap.ErrStepNotDone) || !strings.Contains(err.Error(), "after") {
				t.Errorf("next step: ran=%v err=%v", after, err)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	t.Parallel()
	debian, err := os.ReadFile("testdata/os-release/debian-12")
	if err != nil {
		t.Fatal(err)
	}
	notFound := sshtest.Reply{Exit: 1}
	tests := []struct {
		name  string
		user  string
		setup func(s *sshtest.Script)
		want  []string // command prefixes, in order
	}{
		{
			name: "fresh debian, offline apt cache",
			user: "root",
			setup: func(s *sshtest.Script) {
				s.On(`test "$(hostname)"`, notFound, sshtest.Reply{})
				s.On("command -v dockerd", notFound, sshtest.Reply{})
				s.On("test -S /var/run/docker.sock", notFound, sshtest.Reply{})
			},
			want: []string{`test "$(hostname)" = 'm-1'`, "hostname 'm-1' &&", `test "$(hostname)" = 'm-1'`,
				"cat /etc/os-release", "command -v dockerd", "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install", "command -v dockerd",
				"test -S /var/run/docker.sock", "running() {", "test -S /var/run/docker.sock", "test -S /var/run/docker.sock"},
		},
		{
			name: "missing package lists trigger one update",
			user: "admin",
			setup: func(s *sshtest.Script) {
				s.On(`test "$(hostname)"`)
				s.On("command -v dockerd", notFound, sshtest.Reply{})
				s.On("DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install",
					sshtest.Reply{Exit: 100, Stderr: "E: Unable to locate package docker.io\n"}, sshtest.Reply{})
				s.On("test -S /var/run/docker.sock", sshtest.Reply{})
				s.On("id -nG", notFound, sshtest.Reply{})
			},
			want: []string{`test "$(hostname)" = 'm-1'`, "cat /etc/os-release", "command -v dockerd", "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install",
				"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update", "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install",
				"command -v dockerd", "test -S /var/run/docker.sock", "id -nG 'admin'", "usermod -aG docker 'admin'", "id -nG 'admin'"},
		},
		{
			name: "prepared host only checks",
			user: "root",
			setup: func(s *sshtest.Script) {
				s.On(`test "$(hostname)"`)
				s.On("command -v dockerd")
				s.On("test -S /var/run/docker.sock")
			},
			want: []string{`test "$(hostname)" = 'm-1'`, "cat /etc/os-release", "command -v dockerd", "test -S /var/run/docker.sock"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := (&sshtest.Script{}).
				On("cat /etc/os-release", sshtest.Reply{Stdout: string(debian)}).
				On("DEBIAN_FRONTEND=").On("running() {").On("usermod").On("hostname ")
			tt.setup(s)
			h := &bootstrap.Host{Name: "m-1", User: tt.user, Run: sshtest.Runner{Script: s}}
			if err := bootstrap.Prepare(t.Context(), h); err != nil {
				t.Fatalf("Prepare: %v\ncommands: %q", err, s.Commands())
			}
			got := s.Commands()
			if len(got) != len(tt.want) {
				t.Fatalf("commands:\n%q\nwant prefixes:\n%q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("command %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
			if h.OS.Family != bootstrap.FamilyApt {
				t.Errorf("OS = %+v", h.OS)
			}
		})
	}
}

func TestPrepareRunsPoolSetupOnce(t *testing.T) {
	t.Parallel()
	debian, err := os.ReadFile("testdata/os-release/debian-12")
	if err != nil {
		t.Fatal(err)
	}
	notDone := sshtest.Reply{Exit: 1}
	s := (&sshtest.Script{}).
		On(`test "$(hostname)"`).On("cat /etc/os-release", sshtest.Reply{Stdout: string(debian)}).
		On("command -v dockerd").On("test -S /var/run/docker.sock").
		On(`test "$(cat /var/lib/provision/setup.sha256`, notDone, sshtest.Reply{}).
		On("sh -e -s").On("mkdir -p /var/lib/provision")
	cmds := []string{"docker load -i /opt/app.tar", "echo s3cret | docker login -u bot --password-stdin registry.local"}
	h := &bootstrap.Host{Name: "m-1", User: "root", Run: sshtest.Runner{Script: s}, Setup: cmds}
	if err := bootstrap.Prepare(t.Context(), h); err != nil {
		t.Fatalf("Prepare: %v\ncommands: %q", err, s.Commands())
	}
	var script []byte
	for _, c := range s.Calls() {
		if strings.Contains(c.Cmd, "s3cret") {
			t.Errorf("a setup command's secret is in a command line: %q", c.Cmd)
		}
		if strings.HasPrefix(c.Inner, "sh -e -s") {
			script = c.Stdin
		}
	}
	if want := strings.Join(cmds, "\n") + "\n"; string(script) != want {
		t.Errorf("setup script on stdin = %q, want %q", script, want)
	}
	// The marker now matches: a rerun (resume) only checks.
	before := len(s.Commands())
	h2 := &bootstrap.Host{Name: "m-1", User: "root", Run: sshtest.Runner{Script: s}, Setup: cmds}
	if err := bootstrap.Prepare(t.Context(), h2); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Commands()[before:] {
		if strings.HasPrefix(c, "sh -e -s") {
			t.Errorf("setup ran again although it had finished: %q", s.Commands()[before:])
		}
	}
}
