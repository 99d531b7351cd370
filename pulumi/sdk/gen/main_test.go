package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	schemaPath = "../../../cmd/pulumi-resource-provision/schema.json"
	sdkDir     = "../provision"
)

// TestSDKIsGenerated fails when the committed Go SDK is not what the code
// generator makes of the provider's schema: edited by hand, or left behind
// by a schema change.
func TestSDKIsGenerated(t *testing.T) {
	t.Parallel()
	spec, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	const fix = "pulumi/sdk/provision is not the SDK generated from cmd/pulumi-resource-provision/schema.json; run make pulumi-sdk and commit the result"
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := os.ReadFile(filepath.Join(sdkDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v", fix, err)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s: %s differs at %s", fix, name, firstDiff(got, want[name]))
		}
	}
	committed, err := generatedFiles(sdkDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range committed {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s is no longer generated", fix, name)
		}
	}
}

// TestWrite: regenerating replaces the generated files, removes the ones no
// longer generated and leaves hand-written files alone.
func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	handWritten := []byte("package provision_test\n")
	stale := slices.Concat(header, []byte("\n\npackage provision\n"))
	for name, b := range map[string][]byte{
		"example_test.go": handWritten,
		"dropped.go":      stale,
		"cluster.go":      []byte("package provision // edited by hand\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := write(dir, files); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(dir, "example_test.go")); err != nil || !bytes.Equal(b, handWritten) {
		t.Errorf("hand-written example_test.go = %q, %v; want it unchanged", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dropped.go")); !os.IsNotExist(err) {
		t.Errorf("stale generated dropped.go: %v, want it removed", err)
	}
	for name, b := range files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s not written (%v)", name, err)
		}
		if strings.HasSuffix(name, ".go") && !bytes.HasPrefix(b, header) {
			t.Errorf("%s has no %q header", name, header)
		}
	}
	for _, name := range []string{"cluster.go", "pulumiTypes.go", "doc.go", "internal/pulumiUtilities.go", "pulumi-plugin.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("%s not generated; got %v", name, slices.Sorted(maps.Keys(files)))
		}
	}
}

// firstDiff shows the first line where the committed and generated texts
// differ.
func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range max(len(g), len(w)) {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n  committed: %s\n  generated: %s", i+1, gl, wl)
		}
	}
	return "the end"
}
