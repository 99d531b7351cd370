package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/provisionhq/provision/autoscaler/service"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers/builtin"
)

// Every example plan a user copies must load as it is (with the user's
// ~/.ssh/id_ed25519 the cloud examples name).
func TestExamplePlansValidate(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("example plans: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := plans.Load(f, plans.Options{Providers: builtin.Registry()}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The service definitions that run the autoscaler in a cluster pass flags
// that `provision autoscale` accepts.
func TestAutoscalerServiceDefinitionsUseRealFlags(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"../../examples/swarm/autoscaler.yaml", "../../examples/kubernetes/autoscaler.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var found [][]string
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			found = append(found, autoscaleArgs(doc)...)
		}
		if len(found) == 0 {
			t.Fatalf("%s runs no `provision autoscale`", f)
		}
		for _, args := range found {
			cmd := newAutoscale(&options{})
			if err := cmd.ParseFlags(args); err != nil {
				t.Errorf("%s: provision autoscale %q: %v", f, args, err)
			}
			if p, _ := cmd.Flags().GetString("plan"); p == "" {
				t.Errorf("%s: provision autoscale %q names no plan", f, args)
			}
		}
	}
}

// The hand-written Swarm stack runs the autoscaler as autoscale deploy does.
func TestSwarmStackMatchesDeploy(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/swarm/autoscaler.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	d := service.Deployment{Secrets: []service.File{{Name: service.EnvFile}}}
	want := d.Args()[1:]
	if got := autoscaleArgs(doc); len(got) != 1 || !slices.Equal(got[0], want) {
		t.Errorf("examples/swarm/autoscaler.yaml runs autoscale %q; autoscale deploy runs %q", got, want)
	}
}

// autoscaleArgs finds string lists (a container's command or args) that
// start an autoscaler, and returns what follows "autoscale".
func autoscaleArgs(v any) [][]string {
	var out [][]string
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			out = append(out, autoscaleArgs(x)...)
		}
	case []any:
		var strs []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				strs = append(strs, s)
			}
		}
		if i := slices.Index(strs, "autoscale"); i >= 0 && len(strs) == len(v) {
			return [][]string{strs[i+1:]}
		}
		for _, x := range v {
			out = append(out, autoscaleArgs(x)...)
		}
	}
	return out
}
