package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runMainEnv makes this test binary act as the provision binary in the
// child processes TestValidateNeedsNoCredentials starts.
const runMainEnv = "PROVISION_TEST_RUN_MAIN"

// TestValidateNeedsNoCredentials: `provision validate` of a plan with bad
// settings, for every provider, reports each at file:line:col with no cloud
// credentials, an empty HOME and (where the kernel lets an unprivileged
// process make one) an empty network namespace. The expected output is the
// plan loader's golden file for the same plan.
func TestValidateNeedsNoCredentials(t *testing.T) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = []string{"provision", "validate", os.Getenv(runMainEnv + "_PLAN")}
		main()
		os.Exit(0)
	}
	t.Parallel()
	// No network: a new network namespace has only a loopback that is down.
	var wrap []string
	if err := exec.Command("unshare", "-rn", "true").Run(); err == nil {
		wrap = []string{"unshare", "-rn"}
	} else {
		t.Logf("unshare -rn unavailable (%v): running with the network, every proxy pointing nowhere", err)
	}
	dir := filepath.Join("..", "..", "plans", "testdata", "invalid")
	for _, provider := range []string{"aws", "gcp", "openstack", "docker", "static"} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			plan := filepath.Join(dir, "settings-"+provider+".yaml")
			golden, err := os.ReadFile(filepath.Join(dir, "settings-"+provider+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			want := "error: " + strings.ReplaceAll(string(golden), "testdata/invalid/", filepath.ToSlash(dir)+"/")

			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			argv := append(append([]string(nil), wrap...), os.Args[0], "-test.run=^TestValidateNeedsNoCredentials$")
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			home := t.TempDir()
			cmd.Env = []string{
				runMainEnv + "=1",
				runMainEnv + "_PLAN=" + plan,
				"HOME=" + home,
				"PATH=/nonexistent",
				// Should anything still try the network, it fails at once.
				"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9",
				"AWS_EC2_METADATA_DISABLED=true",
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("validate did not finish in time: %s", stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 1 || err == nil {
				t.Fatalf("validate exit code %d (%v), want 1\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
			}
			if got := stderr.String(); got != want {
				t.Errorf("validate %s printed:\n%s\nwant:\n%s", plan, got, want)
			}
		})
	}
}
