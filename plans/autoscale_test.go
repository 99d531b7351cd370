package plans

import (
	"testing"
	"time"
)

func TestParseAutoscale(t *testing.T) {
	t.Parallel()
	const src = `
cluster: {name: dev}
autoscale:
  expander: price
  max_nodes: 12
  cooldown: 90s
  scale_down: {utilization: 0.4, unneeded_time: 5m}
pools:
  - {name: managers, provider: docker, role: manager, count: 1}
  - name: spot
    provider: docker
    autoscale: {min: 2, max: 8, price: 0.0125, priority: 5, cpu: "1500m", memory: 4GiB}
  - name: big
    provider: docker
    count: 1
    autoscale: {max: 3, cpu: 8, memory: 32Gi}
`
	p, err := Parse("plan.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Autoscale
	if a.Expander != "price" || a.MaxNodes != 12 || time.Duration(a.Cooldown) != 90*time.Second ||
		a.ScaleDown.Utilization != 0.4 || time.Duration(a.ScaleDown.UnneededTime) != 5*time.Minute {
		t.Errorf("autoscale block = %+v", *a)
	}
	spot := p.Pool("spot")
	if spot.Count != 2 {
		t.Errorf("spot starts at %d machines, want its min 2", spot.Count)
	}
	if sa := spot.Autoscale; sa.MilliCPU != 1500 || sa.MemoryBytes != 4<<30 || sa.Price != 0.0125 || sa.Priority != 5 {
		t.Errorf("spot autoscale = %+v", *sa)
	}
	if big := p.Pool("big").Autoscale; big.MilliCPU != 8000 || big.MemoryBytes != 32<<30 || big.Min != 0 {
		t.Errorf("big autoscale = %+v", *big)
	}
	for _, tt := range []struct {
		sizes map[string]int
		want  int
	}{
		{nil, 1 + 2 + 1},
		{map[string]int{"spot": 5, "big": 0}, 1 + 5 + 0},
		{map[string]int{"spot": 50, "managers": 7}, 1 + 8 + 1}, // clamped to max; managers are not autoscaled
	} {
		if got := p.Desired(tt.sizes); got != tt.want {
			t.Errorf("Desired(%v) = %d, want %d", tt.sizes, got, tt.want)
		}
	}
}

func TestParseQuantities(t *testing.T) {
	t.Parallel()
	cpu := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2", 2000, true}, {"0.5", 500, true}, {"250m", 250, true}, {"1.5", 1500, true},
		{"0", 0, false}, {"2 cores", 0, false}, {"-1", 0, false}, {"", 0, false}, {"1k", 0, false},
	}
	for _, tt := range cpu {
		got, err := ParseCPU(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	mem := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4GiB", 4 << 30, true}, {"512Mi", 512 << 20, true}, {"2G", 2e9, true}, {"1048576", 1 << 20, true}, {"1.5GiB", 3 << 29, true},
		{"4 parsecs", 0, false}, {"GiB", 0, false}, {"0", 0, false},
	}
	for _, tt := range mem {
		got, err := ParseMemory(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
