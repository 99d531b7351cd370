package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

var dockerScale = flag.Bool("dockerscale", false, "run TestDockerScale, the docker provider's N = 1 against N = 12 measurement (minutes)")

// TestDockerScale measures the real thing beside make bench's model: up of
// one machine, then of twelve (one manager and eleven workers), with the
// docker provider, in one run, and where each run's time went: every
// machine's stages from up's JSON events. It is a measurement, not a check
// of a bound (the machine's two cores install twelve Docker engines at
// once), so it runs only when asked: go test ./e2e -run TestDockerScale
// -dockerscale -v.
func TestDockerScale(t *testing.T) {
	if !*dockerScale {
		t.Skip("a measurement; run with -dockerscale")
	}
	requireDocker(t)
	var rows []scaleRow
	for _, n := range []int{1, 12} {
		c := newCluster(t, fmt.Sprintf("scale%d-", n))
		c.write(1, n-1)
		row := c.timedUp(n)
		rows = append(rows, row)
		c.must("down", c.plan)
	}
	t.Logf("\n%s", scaleTable(rows))
}

// scaleRow is one up: its wall time and, per stage, when the last machine
// finished it (from up's start) and the longest any machine spent in it.
type scaleRow struct {
	n       int
	total   time.Duration
	lastEnd map[string]time.Duration
	longest map[string]time.Duration
}

var scaleStages = []string{"create", "ssh", "runtime", "join"}

func (c *cluster) timedUp(n int) scaleRow {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--output", "json", "up", c.plan)
	cmd.Dir = c.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("up of %d machines: %v\n%s", n, err, errb.String())
	}
	row := scaleRow{n: n, total: time.Since(start), lastEnd: map[string]time.Duration{}, longest: map[string]time.Duration{}}
	started := map[string]time.Time{} // machine/stage -> start
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var ev struct {
			Time    time.Time `json:"time"`
			Machine string    `json:"machine"`
			Stage   string    `json:"stage"`
			Status  string    `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Machine == "" {
			continue
		}
		key := ev.Machine + "/" + ev.Stage
		switch ev.Status {
		case "start":
			started[key] = ev.Time
		case "done":
			row.lastEnd[ev.Stage] = max(row.lastEnd[ev.Stage], ev.Time.Sub(start))
			if s, ok := started[key]; ok {
				row.longest[ev.Stage] = max(row.longest[ev.Stage], ev.Time.Sub(s))
			}
		}
	}
	for _, s := range scaleStages {
		if _, ok := row.lastEnd[s]; !ok && !(s == "join" && n == 1) {
			c.t.Errorf("up of %d machines: no %s stage finished in its events", n, s)
		}
	}
	return row
}

func scaleTable(rows []scaleRow) string {
	var b strings.Builder
	b.WriteString("| N | up | ratio to N = 1 |")
	for _, s := range scaleStages {
		fmt.Fprintf(&b, " %s: last done (longest one) |", s)
	}
	b.WriteString("\n|---:|---:|---:|" + strings.Repeat("---:|", len(scaleStages)) + "\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %.1f s | %.2f |", r.n, r.total.Seconds(), r.total.Seconds()/rows[0].total.Seconds())
		for _, s := range scaleStages {
			fmt.Fprintf(&b, " %.1f s (%.1f s) |", r.lastEnd[s].Seconds(), r.longest[s].Seconds())
		}
		b.WriteString("\n")
	}
	return b.String()
}
