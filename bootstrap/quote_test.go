package bootstrap

import (
	"os/exec"
	"testing"
)

// The quoting must survive a real shell, not just the fake's unquoting.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"", "plain", "it's", "a'b'c", `$HOME "x" \n`, "line\nbreak", "'"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if string(out) != s {
			t.Errorf("quote(%q) round-trips to %q", s, out)
		}
	}
}
