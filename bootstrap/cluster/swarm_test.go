package cluster_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/bootstrap/sshtest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	infoCmd  = "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'"
	lsCmd    = "docker node ls --format '{{json .}}'"
	psPrefix = "docker node ps --filter desired-state=running"
	curlJoin = "curl -sS --unix-socket /var/run/docker.sock"
	secret   = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz-secretpart"
)

func node(name, addr, role string, s *sshtest.Script) cluster.Node {
	n := cluster.Node{Name: name, Address: addr, Role: role}
	if s != nil {
		n.Run = sshtest.Runner{Script: s}
	}
	return n
}

func fastSwarm() *cluster.Swarm {
	s := cluster.NewSwarm(nil)
	s.Poll = 5 * time.Millisecond
	s.DrainTimeout = 2 * time.Second
	s.DownTimeout = 2 * time.Second
	return s
}

func TestSwarmInit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		info     string
		wantCmds []string
		wantErr  error
	}{
		{name: "already active manager is a no-op", info: "active true\n", wantCmds: []string{infoCmd}},
		{name: "inactive is initialized", info: "inactive false\n", wantCmds: []string{infoCmd, "docker swarm init --advertise-addr '10.0.0.1'"}},
		{name: "worker of another swarm is refused", info: "active false\n", wantCmds: []string{infoCmd}, wantErr: cluster.ErrSwarmState},
		{name: "pending is refused", info: "pending false\n", wantCmds: []string{infoCmd}, wantErr: cluster.ErrSwarmState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := (&sshtest.Script{}).On(infoCmd, sshtest.Reply{Stdout: tt.info}).On("docker swarm init")
			err := fastSwarm().Init(t.Context(), node("m-1", "10.0.0.1", "manager", s))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := s.Commands(); !slices.Equal(got, tt.wantCmds) {
				t.Errorf("commands = %q, want %q", got, tt.wantCmds)
			}
		})
	}
}

func TestSwarmCredential(t *testing.T) {
	t.Parallel()
	s := (&sshtest.Script{}).On("docker swarm join-token -q worker", sshtest.Reply{Stdout: secret + "\n"})
	cred, err := fastSwarm().Credential(t.Context(), node("m-1", "10.0.0.1", "manager", s), "worker")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Secret() != secret {
		t.Errorf("secret = %q", cred.Secret())
	}
	if _, err := fastSwarm().Credential(t.Context(), node("m-1", "10.0.0.1", "manager", s), "admin"); err == nil {
		t.Error("a bogus role was accepted")
	}
}

func TestSwarmJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		info       string
		curl       sshtest.Reply
		wantJoin   bool
		wantErrMsg string
	}{
		{name: "inactive node joins", info: "inactive false", curl: sshtest.Reply{Stdout: "\n200"}, wantJoin: true},
		{name: "member is a no-op", info: "active false"},
		{
			name: "engine refusal is surfaced without the token", info: "inactive false", wantJoin: true,
			curl:       sshtest.Reply{Stdout: `{"message":"invalid join token ` + secret + `"}` + "\n400"},
			wantErrMsg: "engine API status 400: invalid join token [redacted]",
		},
		{
			name: "curl failure", info: "inactive false", wantJoin: true,
			curl:       sshtest.Reply{Exit: 7, Stderr: "curl: (7) Couldn't connect to server"},
			wantErrMsg: "Couldn't connect",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mgrScript := &sshtest.Script{}
			s := (&sshtest.Script{}).On(infoCmd, sshtest.Reply{Stdout: tt.info}).On(curlJoin, tt.curl)
			err := fastSwarm().Join(t.Context(), node("w-1", "10.0.0.7", "worker", s), node("m-1", "10.0.0.1", "manager", mgrScript), cluster.NewCredential(secret))
			if tt.wantErrMsg == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErrMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErrMsg)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErrMsg)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the token leaked into the error: %v", err)
			}
			for _, c := range append(s.Calls(), mgrScript.Calls()...) {
				if strings.Contains(c.Cmd, secret) {
					t.Errorf("the token is in a command line: %q", c.Cmd)
				}
			}
			var join *sshtest.Call
			for _, c := range s.Calls() {
				if strings.HasPrefix(c.Cmd, curlJoin) {
					join = &c
				}
			}
			if (join != nil) != tt.wantJoin {
				t.Fatalf("join call made = %v, want %v (commands %q)", join != nil, tt.wantJoin, s.Commands())
			}
			if join == nil {
				return
			}
			var body struct {
				ListenAddr, AdvertiseAddr, JoinToken string
				RemoteAddrs                          []string
			}
			if err := json.Unmarshal(join.Stdin, &body); err != nil {
				t.Fatalf("stdin %q: %v", join.Stdin, err)
			}
			if body.JoinToken != secret || body.AdvertiseAddr != "10.0.0.7" || body.ListenAddr != "0.0.0.0:2377" ||
				!slices.Equal(body.RemoteAddrs, []string{"10.0.0.1:2377"}) {
				t.Errorf("join request = %+v", body)
			}
			if !strings.Contains(join.Cmd, "http://localhost/swarm/join") || !strings.Contains(join.Cmd, "--data-binary @-") {
				t.Errorf("join command = %q", join.Cmd)
			}
		})
	}
}

// nodeLine is one `docker node ls` JSON line.
func nodeLine(id, host, status, avail, mgr string) string {
	b, _ := json.Marshal(map[string]any{"ID": id, "Hostname": host, "Status": status, "Availability": avail, "ManagerStatus": mgr, "Self": false})
	return string(b) + "\n"
}

func TestSwarmRemove(t *testing.T) {
	t.Parallel()
	leader := nodeLine("mgr1", "m-1", "Ready", "Active", "Leader")
	tests := []struct {
		name      string
		ls        []sshtest.Reply // successive node ls replies
		reachable bool
		info      string
		want      []string // command prefixes in order, mgr and node interleaved
	}{
		{
			name: "worker: drain, leave, rm",
			ls: []sshtest.Reply{
				{Stdout: leader + nodeLine("wid1", "w-1", "Ready", "Active", "")},
				{Stdout: leader + nodeLine("wid1", "w-1", "Down", "Drain", "")},
			},
			reachable: true, info: "active false",
			want: []string{lsCmd, "docker node update --availability drain 'wid1'", psPrefix, psPrefix,
				infoCmd, "docker swarm leave", lsCmd, "docker node rm --force 'wid1'"},
		},
		{
			name: "manager: demoted before it leaves with --force",
			ls: []sshtest.Reply{
				{Stdout: leader + nodeLine("mid2", "w-1", "Ready", "Active", "Reachable")},
				{Stdout: leader + nodeLine("mid2", "w-1", "Down", "Drain", "")},
			},
			reachable: true, info: "active true",
			want: []string{lsCmd, "docker node update --availability drain 'mid2'", psPrefix, psPrefix,
				"docker node demote 'mid2'", infoCmd, "docker swarm leave --force", lsCmd, "docker node rm --force 'mid2'"},
		},
		{
			name: "unreachable node is removed from the manager",
			ls: []sshtest.Reply{
				{Stdout: leader + nodeLine("wid1", "w-1", "Ready", "Drain", "")},
				{Stdout: leader + nodeLine("wid1", "w-1", "Ready", "Drain", "")},
				{Stdout: leader + nodeLine("wid1", "w-1", "Down", "Drain", "")},
			},
			want: []string{lsCmd, psPrefix, psPrefix, lsCmd, lsCmd, "docker node rm --force 'wid1'"},
		},
		{
			name:      "unknown node is already removed",
			ls:        []sshtest.Reply{{Stdout: leader}},
			reachable: true, info: "inactive false",
			want: []string{lsCmd, infoCmd},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// One script for both nodes records the interleaved order.
			s := (&sshtest.Script{}).
				On(lsCmd, tt.ls...).
				On("docker node update").
				On(psPrefix, sshtest.Reply{Stdout: "task1\n"}, sshtest.Reply{}).
				On("docker node demote").
				On("docker node rm").
				On(infoCmd, sshtest.Reply{Stdout: tt.info}).
				On("docker swarm leave")
			var n cluster.Node
			if tt.reachable {
				n = node("w-1", "10.0.0.7", "worker", s)
			} else {
				n = node("w-1", "10.0.0.7", "worker", nil)
			}
			if err := fastSwarm().Remove(t.Context(), node("m-1", "10.0.0.1", "manager", s), n); err != nil {
				t.Fatal(err)
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
		})
	}
}

func TestSwarmRemoveRefusesItsOwnManager(t *testing.T) {
	t.Parallel()
	s := &sshtest.Script{}
	if err := fastSwarm().Remove(t.Context(), node("m-1", "10.0.0.1", "manager", s), node("m-1", "10.0.0.1", "manager", s)); err == nil {
		t.Error("removing the manager through itself succeeded")
	}
}

func TestSwarmMembers(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile(filepath.Join("testdata", "node-ls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	s := (&sshtest.Script{}).On(lsCmd, sshtest.Reply{Stdout: string(in)})
	members, err := fastSwarm().Members(t.Context(), node("m-1", "10.0.0.1", "manager", s))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(members, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "members.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("members differ from %s:\n%s\nwant:\n%s", golden, got, want)
	}

	bad := (&sshtest.Script{}).On(lsCmd, sshtest.Reply{Stdout: "{not json\n"})
	if _, err := fastSwarm().Members(t.Context(), node("m-1", "10.0.0.1", "manager", bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: err = %v", err)
	}
}
