package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// requireDocker skips without a Docker engine, unless the environment says
// one must be there (`make test` and CI set PROVISION_REQUIRE_DOCKER=1):
// then it fails.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs docker: skipped with -short")
	}
	dockertest.Require(t)
}

// containers lists the cluster's containers by the docker provider's label.
func containers(t *testing.T, cluster string) []string {
	t.Helper()
	// Not t.Context(): it is already cancelled when t.Cleanup calls this.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := dockertest.ContainerNames(ctx, "provision.cluster="+cluster)
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return names
}

type node struct{ id, pool, role, address, providerID, phase string }

func nodesOf(t *testing.T, out property.Map) []node {
	t.Helper()
	var nodes []node
	for _, v := range out.Get("nodes").AsArray().All {
		m := v.AsMap()
		nodes = append(nodes, node{m.Get("id").AsString(), m.Get("pool").AsString(), m.Get("role").AsString(),
			m.Get("address").AsString(), m.Get("providerId").AsString(), m.Get("phase").AsString()})
	}
	return nodes
}

func ids(nodes []node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.id
	}
	slices.Sort(out)
	return out
}

// swarmNodes is `docker node ls` on the manager: hostname → status.
func swarmNodes(t *testing.T, manager string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := dockertest.Exec(ctx, manager, "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if err != nil {
		t.Fatalf("docker node ls on %s: %v\n%s", manager, err, out)
	}
	nodes := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			nodes[f[0]] = f[1]
		}
	}
	return nodes
}

// TestClusterLifecycle drives the provider as the Pulumi engine would, in
// process: create a real local cluster (docker machines, SSH bootstrap, a
// Swarm), read it back, scale its workers 2 → 3 after checking the diff
// says update (not replace), check that a kind change replaces, and delete
// it, leaving no container behind.
func TestClusterLifecycle(t *testing.T) {
	requireDocker(t)
	s := server(t)
	name := fmt.Sprintf("pul%d", time.Now().UnixNano()%1e6)
	urn := clusterURN(name)
	inputs := func(workers int) property.Map {
		return props(map[string]any{
			"name": name,
			"pools": []any{
				pool("managers", "docker", "manager", 1),
				map[string]any{"name": "workers", "provider": "docker", "count": workers, "labels": map[string]any{"tier": "general"}},
			},
		})
	}
	check := func(in property.Map) property.Map {
		t.Helper()
		resp, err := s.Check(p.CheckRequest{Urn: urn, Inputs: in})
		if err != nil || len(resp.Failures) > 0 {
			t.Fatalf("Check: %v %+v", err, resp.Failures)
		}
		return resp.Inputs
	}

	// Whatever happens, leave no machine behind: Delete also finds
	// machines by their tags, so the inputs alone are enough.
	last := check(inputs(2))
	t.Cleanup(func() {
		if len(containers(t, name)) == 0 {
			return
		}
		if err := s.Delete(p.DeleteRequest{ID: name, Urn: urn, Properties: last}); err != nil {
			t.Logf("cleanup delete: %v", err)
		}
	})

	in2 := check(inputs(2))
	preview, err := s.Create(p.CreateRequest{Urn: urn, Properties: in2, DryRun: true})
	if err != nil {
		t.Fatalf("preview create: %v", err)
	}
	if !preview.Properties.Get("managerAddress").IsComputed() || len(containers(t, name)) != 0 {
		t.Fatalf("a preview must create nothing and leave outputs unknown: %v", preview.Properties.Get("managerAddress"))
	}

	start := time.Now()
	created, err := s.Create(p.CreateRequest{Urn: urn, Properties: in2})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("create: %s", time.Since(start).Round(time.Second))
	last = created.Properties
	out := created.Properties
	if created.ID != name {
		t.Errorf("ID %q, want the cluster name %q", created.ID, name)
	}
	nodes := nodesOf(t, out)
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3: %+v", len(nodes), nodes)
	}
	var manager node
	for _, n := range nodes {
		if n.id == "" || n.address == "" || n.providerID == "" || n.phase != "joined" {
			t.Errorf("node not fully recorded: %+v", n)
		}
		if n.role == "manager" {
			manager = n
		}
	}
	if manager.pool != "managers" || out.Get("managerAddress").AsString() != manager.address {
		t.Fatalf("managerAddress %q, want the manager's address (%+v)", out.Get("managerAddress").AsString(), manager)
	}
	if got := containers(t, name); !slices.Equal(got, ids(nodes)) {
		t.Fatalf("containers %v, want the nodes %v", got, ids(nodes))
	}

	// Secrets are Pulumi secrets; the state document holds none of them.
	key := out.Get("privateKey")
	if !key.Secret() {
		t.Errorf("privateKey output is not secret")
	}
	if _, err := ssh.ParsePrivateKey([]byte(key.AsString())); err != nil {
		t.Errorf("privateKey output: %v", err)
	}
	for _, tok := range []string{"workerJoinToken", "managerJoinToken"} {
		v := out.Get(tok)
		if !v.Secret() || !strings.HasPrefix(v.AsString(), "SWMTKN-") {
			t.Errorf("%s: secret=%v, value prefix %.7q; want a secret swarm token", tok, v.Secret(), v.AsString())
		}
	}
	doc := out.Get("state")
	if doc.Secret() || !strings.Contains(doc.AsString(), manager.id) {
		t.Errorf("state output: secret=%v, want a public document naming %s", doc.Secret(), manager.id)
	}
	for _, secret := range []string{key.AsString(), out.Get("workerJoinToken").AsString(), out.Get("managerJoinToken").AsString(), "PRIVATE KEY"} {
		if strings.Contains(doc.AsString(), secret) {
			t.Fatalf("the state output holds a secret")
		}
	}

	// Read (refresh) finds the same machines.
	read, err := s.Read(p.ReadRequest{ID: name, Urn: urn, Properties: out, Inputs: in2})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := ids(nodesOf(t, read.Properties)); read.ID != name || !slices.Equal(got, ids(nodes)) {
		t.Fatalf("read: ID %q nodes %v, want %q %v", read.ID, got, name, ids(nodes))
	}

	// 2 → 3 workers is an update of one property, not a replacement.
	in3 := check(inputs(3))
	diff, err := s.Diff(p.DiffRequest{ID: name, Urn: urn, State: out, Inputs: in3})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	wantDiff := map[string]p.PropertyDiff{"pools[1].count": {Kind: p.Update, InputDiff: true}}
	if !diff.HasChanges || diff.DeleteBeforeReplace || !equalDiff(diff.DetailedDiff, wantDiff) {
		t.Fatalf("diff 2 → 3 workers: %+v, want only %v", diff, wantDiff)
	}

	start = time.Now()
	updated, err := s.Update(p.UpdateRequest{ID: name, Urn: urn, State: out, OldInputs: in2, Inputs: in3})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	t.Logf("update 2 → 3 workers: %s", time.Since(start).Round(time.Second))
	last = updated.Properties
	out = updated.Properties
	after := nodesOf(t, out)
	if len(after) != 4 {
		t.Fatalf("%d nodes after update, want 4: %+v", len(after), after)
	}
	for _, id := range ids(nodes) {
		if !slices.Contains(ids(after), id) {
			t.Fatalf("node %s was replaced by the update: %v → %v", id, ids(nodes), ids(after))
		}
	}
	swarm := swarmNodes(t, manager.id)
	if len(swarm) != 4 {
		t.Fatalf("swarm has %d nodes %v, want 4", len(swarm), swarm)
	}
	for _, n := range after {
		if swarm[n.id] != "Ready" {
			t.Fatalf("swarm node %s is %q, want Ready (%v)", n.id, swarm[n.id], swarm)
		}
	}
	if got := containers(t, name); !slices.Equal(got, ids(after)) {
		t.Fatalf("containers %v, want the nodes %v", got, ids(after))
	}
	if out.Get("managerAddress").AsString() != manager.address || !out.Get("privateKey").Secret() {
		t.Fatalf("update changed the manager address or lost a secret")
	}

	// Changing what the machines are named after, or how provision logs
	// in, replaces the cluster, deleting the old one first.
	for _, tt := range []struct{ prop, value string }{{"kind", "k3s"}, {"name", name + "x"}} {
		diff, err := s.Diff(p.DiffRequest{ID: name, Urn: urn, State: out, Inputs: in3.Set(tt.prop, property.New(tt.value))})
		if err != nil {
			t.Fatalf("diff %s: %v", tt.prop, err)
		}
		want := map[string]p.PropertyDiff{tt.prop: {Kind: p.UpdateReplace, InputDiff: true}}
		if !diff.HasChanges || !diff.DeleteBeforeReplace || !equalDiff(diff.DetailedDiff, want) {
			t.Fatalf("diff %s change: %+v, want %v with delete before replace", tt.prop, diff, want)
		}
	}

	// A machine deleted behind provision's back drops out on refresh.
	victim := ""
	for _, n := range after {
		if n.role == "worker" {
			victim = n.id
		}
	}
	if err := dockertest.RemoveContainers(t.Context(), victim); err != nil {
		t.Fatalf("docker rm %s: %v", victim, err)
	}
	read, err = s.Read(p.ReadRequest{ID: name, Urn: urn, Properties: out, Inputs: in3})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := ids(nodesOf(t, read.Properties)); len(got) != 3 || slices.Contains(got, victim) {
		t.Fatalf("read after removing %s: nodes %v", victim, got)
	}

	start = time.Now()
	if err := s.Delete(p.DeleteRequest{ID: name, Urn: urn, Properties: read.Properties}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	t.Logf("delete: %s", time.Since(start).Round(time.Second))
	if got := containers(t, name); len(got) != 0 {
		t.Fatalf("delete left containers: %v", got)
	}
	if nets, _ := dockertest.Networks(t.Context(), "provision.cluster="+name); len(nets) != 0 {
		t.Fatalf("delete left a network: %s", nets)
	}
	// Deleting again (a retried delete) is a success.
	if err := s.Delete(p.DeleteRequest{ID: name, Urn: urn, Properties: read.Properties}); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func equalDiff(got, want map[string]p.PropertyDiff) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
