package scalebench

import (
	"fmt"
	"image/color"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Report is the results of one benchmark run, with each result's wall
// time (what the run cost in real time, unlike its model times).
type Report struct {
	Model   Model
	Results []*Result
	Wall    map[*Result]time.Duration
}

// strategies lists the report's strategies in the order first run.
func (rep *Report) strategies() []string {
	var out []string
	for _, r := range rep.Results {
		if !slices.Contains(out, r.Name()) {
			out = append(out, r.Name())
		}
	}
	return out
}

func (rep *Report) sizes() []int {
	var out []int
	for _, r := range rep.Results {
		if !slices.Contains(out, r.N) {
			out = append(out, r.N)
		}
	}
	slices.Sort(out)
	return out
}

func (rep *Report) find(name string, n int) *Result {
	for _, r := range rep.Results {
		if r.Name() == name && r.N == n {
			return r
		}
	}
	return nil
}

// Ratio is time to N Ready ÷ time to 1 Ready for a strategy; 0 when
// either run is missing.
func (rep *Report) Ratio(name string, n int) float64 {
	one, r := rep.find(name, 1), rep.find(name, n)
	if one == nil || r == nil || one.Ready <= 0 {
		return 0
	}
	return r.Ready.Seconds() / one.Ready.Seconds()
}

// secs is a model duration in seconds: "22.2 s", "183 s", "6,130 s".
func secs(d time.Duration) string {
	s := d.Seconds()
	if s < 100 {
		return fmt.Sprintf("%.1f s", s)
	}
	n := int(math.Round(s))
	if n < 1000 {
		return fmt.Sprintf("%d s", n)
	}
	return fmt.Sprintf("%d,%03d s", n/1000, n%1000)
}

// Table is the report as Markdown: time to all Ready per N and strategy
// with its ratio to N = 1 and the last strategy's (the peers') time over
// each other's, then each run's details.
func (rep *Report) Table() string {
	var b strings.Builder
	names := rep.strategies()
	b.WriteString("| N |")
	for _, n := range names {
		fmt.Fprintf(&b, " %s: Ready | ratio to N = 1 |", n)
	}
	peers := names[len(names)-1]
	for _, name := range names[:len(names)-1] {
		fmt.Fprintf(&b, " %s ÷ %s |", peers, name)
	}
	b.WriteString("\n|---:|")
	b.WriteString(strings.Repeat("---:|---:|", len(names)))
	b.WriteString(strings.Repeat("---:|", len(names)-1))
	b.WriteString("\n")
	for _, n := range rep.sizes() {
		fmt.Fprintf(&b, "| %d |", n)
		for _, name := range names {
			r := rep.find(name, n)
			if r == nil {
				b.WriteString(" – | – |")
				continue
			}
			fmt.Fprintf(&b, " %s | %.2f |", secs(r.Ready), rep.Ratio(name, n))
		}
		for _, name := range names[:len(names)-1] {
			ours, theirs := rep.find(name, n), rep.find(peers, n)
			if ours != nil && theirs != nil {
				fmt.Fprintf(&b, " %.1f× |", theirs.Ready.Seconds()/ours.Ready.Seconds())
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| strategy | N | addresses known | longest wait for a slot | runtimes done | Ready | EC2 API calls (throttled) | most installs / joins at once | peak goroutines | peak heap | wall |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, name := range names {
		for _, n := range rep.sizes() {
			r := rep.find(name, n)
			if r == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %d / %d | %d | %.0f MiB | %.1f s |\n",
				name, n, secs(r.Addresses), secs(r.SlotWait), secs(r.Runtimes), secs(r.Ready), calls(r),
				r.RuntimePeak, r.JoinPeak, r.PeakGoroutines, float64(r.PeakHeap)/(1<<20), rep.Wall[r].Seconds())
		}
	}
	return b.String()
}

// calls lists API calls by action: "RunInstances 13 (1), DescribeInstances 26".
func calls(r *Result) string {
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(r.Calls)) {
		s := fmt.Sprintf("%s %d", a, r.Calls[a])
		if t := r.Throttled[a]; t > 0 {
			s += fmt.Sprintf(" (%d)", t)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// Plot writes a PNG of time to all Ready against N, one line per
// strategy, both axes logarithmic.
func (rep *Report) Plot(path string) error {
	p := plot.New()
	p.Title.Text = "Time to N machines Ready (EC2's published API limits, model time)"
	p.X.Label.Text = "N machines"
	p.Y.Label.Text = "time to all Ready (minutes)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(12), -vg.Points(12)
	p.Legend.Padding = vg.Points(4)
	p.Add(plotter.NewGrid())
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	}
	for i, name := range rep.strategies() {
		var xys plotter.XYs
		for _, n := range rep.sizes() {
			if r := rep.find(name, n); r != nil {
				xys = append(xys, plotter.XY{X: float64(n), Y: r.Ready.Minutes()})
			}
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		c := palette[i%len(palette)]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
