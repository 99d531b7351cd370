package session

import (
	"strings"
	"testing"

	"github.com/provisionhq/provision/plans"
)

// TestDeployRefusesWhatCannotRun: a plan the service could not run is
// refused before anything is built, saying what to change.
func TestDeployRefusesWhatCannotRun(t *testing.T) {
	t.Parallel()
	base := func() *plans.Plan {
		return &plans.Plan{
			Path:    "plan.yaml",
			Cluster: plans.Cluster{Name: "c", Kind: "swarm"},
			State:   plans.StateConf{Backend: "etcd", Endpoints: []string{"https://etcd.example.com:2379"}},
			Pools: []plans.Pool{
				{Name: "managers", Provider: "aws", Role: "manager", Count: 1},
				{Name: "workers", Provider: "aws", Autoscale: &plans.PoolAutoscale{Min: 0, Max: 3}},
			},
		}
	}
	tests := []struct {
		name   string
		change func(p *plans.Plan)
		want   string // "" for accepted
	}{
		{"a cloud pool on etcd", func(*plans.Plan) {}, ""},
		{"file state", func(p *plans.Plan) { p.State = plans.StateConf{} }, `state.backend is "file"`},
		{"loopback etcd", func(p *plans.Plan) { p.State.Endpoints = []string{"http://127.0.0.1:2379"} }, "is on this machine only"},
		{"unix socket etcd", func(p *plans.Plan) { p.State.Endpoints = []string{"unix:///run/etcd.sock"} }, "is on this machine only"},
		{"endpoints only in the environment", func(p *plans.Plan) { p.State.Endpoints = nil }, "names no state.endpoints"},
		{"kubeadm", func(p *plans.Plan) { p.Cluster.Kind = "kubeadm" }, "examples/kubernetes/autoscaler.yaml"},
		{"nothing autoscaled", func(p *plans.Plan) { p.Pools[1].Autoscale = nil }, "no autoscaled pool"},
		{"docker pool", func(p *plans.Plan) { p.Pools[1].Provider = "docker" }, "pool workers uses the docker provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := base()
			tt.change(p)
			err := (&Session{Plan: p}).deployable()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
