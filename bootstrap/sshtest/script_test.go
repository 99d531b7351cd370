package sshtest

import (
	"bytes"
	"strings"
	"testing"
)

func TestScript(t *testing.T) {
	t.Parallel()
	s := (&Script{}).
		On("docker", Reply{Stdout: "generic"}).
		On("docker info", Reply{Stdout: "first"}, Reply{Stdout: "then"})
	tests := []struct {
		cmd, wantInner, wantOut string
		wantExit                int
	}{
		{"docker info", "docker info", "first", 0},
		{`sudo -n sh -c 'docker info --format '\''x'\'''`, "docker info --format 'x'", "then", 0},
		{"docker info", "docker info", "then", 0},
		{"docker ps", "docker ps", "generic", 0},
		{"rm -rf /", "rm -rf /", "", 127},
	}
	for _, tt := range tests {
		r := s.Handle(Call{Cmd: tt.cmd})
		if r.Stdout != tt.wantOut || r.Exit != tt.wantExit {
			t.Errorf("%q: reply %+v, want stdout %q exit %d", tt.cmd, r, tt.wantOut, tt.wantExit)
		}
	}
	calls := s.Calls()
	for i, tt := range tests {
		if calls[i].Inner != tt.wantInner {
			t.Errorf("call %d inner = %q, want %q", i, calls[i].Inner, tt.wantInner)
		}
	}

	var out bytes.Buffer
	err := Runner{Script: s}.Run(t.Context(), "rm -rf /", strings.NewReader("in"), &out)
	if st, ok := err.(*ExitError); !ok || st.ExitStatus() != 127 {
		t.Errorf("unscripted command: err = %v", err)
	}
	if got := s.Calls()[len(s.Calls())-1].Stdin; string(got) != "in" {
		t.Errorf("stdin recorded = %q", got)
	}
}
