package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisionhq/provision/autoscaler"
	"github.com/provisionhq/provision/autoscaler/service"
	"github.com/provisionhq/provision/bootstrap/cluster/kubeadm"
	"github.com/provisionhq/provision/internal/session"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/state/etcd"
)

// autoscaleFlags override the plan's autoscale block; a flag left unset
// keeps the plan's value.
type autoscaleFlags struct {
	plan         string
	source       string
	dockerHost   string
	kubeconfig   string
	listen       string
	expander     string
	maxNodes     int
	scan         time.Duration
	cooldown     time.Duration
	utilization  float64
	unneeded     time.Duration
	drainTimeout time.Duration
	noScaleDown  bool
	leaseTTL     time.Duration
	once         bool
	dryRun       bool
	sshKey       string
	k8sArtifacts string
	envFiles     []string
}

// options are the loader options the flags imply.
func (f *autoscaleFlags) options() plans.Options {
	if f.k8sArtifacts == "" {
		return plans.Options{}
	}
	return plans.Options{ImageDir: filepath.Join(f.k8sArtifacts, "plan-images")}
}

// override applies the flags that replace plan settings for this process:
// the login key and, inside the cluster, the node's copy of the artifacts.
func (f *autoscaleFlags) override(p *plans.Plan) {
	if f.sshKey != "" {
		p.SSH.Key, p.SSH.Agent = f.sshKey, false
	}
	if f.k8sArtifacts != "" && p.Kubernetes != nil {
		p.Kubernetes.Artifacts = plans.KubernetesArtifacts{Source: "dir", Dir: filepath.Join(f.k8sArtifacts, "current")}
	}
}

func newAutoscale(o *options) *cobra.Command {
	f := &autoscaleFlags{}
	cmd := &cobra.Command{
		Use:   "autoscale PLAN",
		Short: "Grow and shrink the plan's autoscaled pools with the cluster's demand",
		Long: `Watch the cluster's demand and resize the pools that have an autoscale block,
through the same engine as up.

Scale-up: tasks pending for lack of room (Swarm: "no suitable node"; Kubernetes:
pods Unschedulable) are bin-packed onto each pool's machine shape; an expander
(least-waste, price, priority) picks the pools, within each pool's min/max and
autoscale.max_nodes. Machines being created count as capacity, so a burst is
met once. A pool whose cloud answers with a quota or capacity error is backed
off (30s doubling to 10m) and the next pool that fits is used, on another
cloud if the plan has one.

Scale-down: a node whose reserved CPU and memory stay under the utilization
threshold for the unneeded time, whose work fits on the other nodes, is
drained and removed; never below min, never a manager, and not within the
cool-down after a change.

Demand is read from a Swarm manager's Engine API (over SSH to the primary
manager by default, or --docker-host unix:///var/run/docker.sock when running
as a service on a manager) or from Kubernetes (--source kubernetes:
in-cluster config, or --kubeconfig). With state.backend etcd, several replicas
may run: one leads and acts, the others stand by.

Every decision is logged with its reason. /metrics (Prometheus) and /healthz
are served on --listen.

  provision autoscale plan.yaml
  provision autoscale plan.yaml --once --dry-run     one decision, no change`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.plan = args[0]
			}
			if f.plan == "" {
				return errors.New("name the plan: provision autoscale PLAN (or --plan PLAN)")
			}
			return runAutoscale(cmd, o, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.plan, "plan", "", "the plan file (instead of the PLAN argument)")
	fl.StringVar(&f.source, "source", "", "where demand is read: swarm or kubernetes (default: the plan's cluster kind)")
	fl.StringVar(&f.dockerHost, "docker-host", "", "a manager's Engine API socket, e.g. unix:///var/run/docker.sock (default: over SSH to the primary manager)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for --source kubernetes (default: in-cluster config, then $KUBECONFIG)")
	fl.StringVar(&f.listen, "listen", "", "address of /metrics and /healthz (plan: autoscale.listen; default :9090; \"off\" to disable)")
	fl.StringVar(&f.expander, "expander", "", "pool choice: least-waste, price or priority (plan: autoscale.expander)")
	fl.IntVar(&f.maxNodes, "max-nodes", 0, "cap on the cluster's machines across pools (plan: autoscale.max_nodes)")
	fl.DurationVar(&f.scan, "scan-interval", 0, "longest time between two looks at demand; events trigger sooner (default 10s)")
	fl.DurationVar(&f.cooldown, "cooldown", 0, "no scale-down this long after any change (default 2m)")
	fl.Float64Var(&f.utilization, "scale-down-utilization", 0, "a node below this fraction of reserved CPU and memory is unneeded (default 0.5)")
	fl.DurationVar(&f.unneeded, "scale-down-unneeded-time", 0, "how long a node must stay unneeded before removal (default 10m)")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 0, "bound on draining one node (default 5m)")
	fl.BoolVar(&f.noScaleDown, "no-scale-down", false, "never remove nodes")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 0, "leader lease with the etcd state backend (default 10s)")
	fl.BoolVar(&f.once, "once", false, "make one pass and exit")
	fl.BoolVar(&f.dryRun, "dry-run", false, "decide and log, change nothing")
	fl.StringVar(&f.sshKey, "ssh-key", "", "private key file to log in to machines with, instead of the plan's ssh.key (a mounted Secret in a cluster)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read KEY=VALUE lines (cloud credentials, PROVISION_ETCD_PASSWORD) into the environment first: a secret mounted by the orchestrator, as autoscale deploy does (repeatable)")
	fl.StringVar(&f.k8sArtifacts, "kubernetes-artifacts", "", "a node's "+kubeadm.NodeArtifacts+", mounted: push the Kubernetes bundle and the plan's images found there to new nodes, instead of building or downloading them")
	cmd.AddCommand(newAutoscaleDeploy(o))
	return cmd
}

// loadEnvFiles sets the variables of each --env-file in this process's
// environment, where the clouds' credential chains look.
func (f *autoscaleFlags) loadEnvFiles() error {
	for _, name := range f.envFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("--env-file: %w", err)
		}
		vars, err := service.ParseEnv(data, name)
		if err != nil {
			return fmt.Errorf("--env-file: %w", err)
		}
		for _, kv := range vars {
			if err := os.Setenv(kv[0], kv[1]); err != nil {
				return fmt.Errorf("--env-file %s: %s: %w", name, kv[0], err)
			}
		}
	}
	return nil
}

// settings merges the plan's autoscale block with the flags.
func (f *autoscaleFlags) settings(cmd *cobra.Command, p *plans.Plan) plans.Autoscale {
	var a plans.Autoscale
	if p.Autoscale != nil {
		a = *p.Autoscale
	}
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if set("expander") {
		a.Expander = f.expander
	}
	if set("max-nodes") {
		a.MaxNodes = f.maxNodes
	}
	if set("scan-interval") {
		a.ScanInterval = plans.Duration(f.scan)
	}
	if set("cooldown") {
		a.Cooldown = plans.Duration(f.cooldown)
	}
	if set("scale-down-utilization") {
		a.ScaleDown.Utilization = f.utilization
	}
	if set("scale-down-unneeded-time") {
		a.ScaleDown.UnneededTime = plans.Duration(f.unneeded)
	}
	if set("drain-timeout") {
		a.ScaleDown.DrainTimeout = plans.Duration(f.drainTimeout)
	}
	if set("no-scale-down") {
		a.ScaleDown.Disabled = f.noScaleDown
	}
	if set("lease-ttl") {
		a.LeaseTTL = plans.Duration(f.leaseTTL)
	}
	if set("listen") {
		a.Listen = f.listen
	}
	if a.Listen == "" {
		a.Listen = ":9090"
	}
	return a
}

func runAutoscale(cmd *cobra.Command, o *options, f *autoscaleFlags) error {
	ctx := cmd.Context()
	if err := f.loadEnvFiles(); err != nil {
		return err
	}
	s, err := loadWith(ctx, f.plan, o, f.options())
	if err != nil {
		return err
	}
	f.override(s.Plan)
	a := f.settings(cmd, s.Plan)
	if u := a.ScaleDown.Utilization; u < 0 || u > 1 {
		return fmt.Errorf("--scale-down-utilization %g: use a fraction between 0 and 1", u)
	}
	exp, err := autoscaler.ExpanderByName(a.Expander)
	if err != nil {
		return fmt.Errorf("--expander: %w", err)
	}
	if len(s.Plan.Autoscaled()) == 0 {
		return fmt.Errorf("%s has no autoscaled pool: add an autoscale block to a worker pool, e.g. autoscale: {min: 1, max: 10}", f.plan)
	}
	so, err := f.sourceOptions()
	if err != nil {
		return err
	}
	src, closeSrc, err := s.DemandSource(so)
	if err != nil {
		return err
	}
	defer closeSrc()

	metrics := autoscaler.NewMetrics()
	if !f.once {
		// Serve /healthz before the engine gathers the Kubernetes
		// artifacts, which may take a while: a liveness probe must not
		// kill the process meanwhile.
		stop, err := metrics.Serve(ctx, a.Listen, s.Log)
		if err != nil {
			return fmt.Errorf("%w (use --listen to pick another address, or --listen off)", err)
		}
		defer stop()
	}
	var act autoscaler.Actuator = autoscaler.DryRun{Log: s.Log}
	if !f.dryRun {
		e, err := s.Engine(ctx, "autoscale", nil)
		if err != nil {
			return err
		}
		// Another run (an up, a replica that lost its lease mid-apply) may
		// hold the state lock for a while: wait for it rather than skip.
		e.LockWait = 2 * time.Minute
		act = apply.Actuator{Engine: e}
	}
	loop := &autoscaler.Loop{
		Plan: s.Plan, Source: src, State: s.Backend, Actuator: act,
		Planner: autoscaler.Planner{Expander: exp, MaxNodes: a.MaxNodes,
			Backoff: &autoscaler.Backoff{Initial: time.Duration(a.BackoffInitial), Max: time.Duration(a.BackoffMax)}},
		ScaleDown:    autoscaler.ScaleDown{Threshold: a.ScaleDown.Utilization, UnneededTime: time.Duration(a.ScaleDown.UnneededTime)},
		NoScaleDown:  a.ScaleDown.Disabled,
		Cooldown:     time.Duration(a.Cooldown),
		ScanInterval: time.Duration(a.ScanInterval),
		DrainTimeout: time.Duration(a.ScaleDown.DrainTimeout),
		Metrics:      metrics,
		Log:          s.Log,
		Reload:       s.Reloader(f.plan, f.options(), f.override),
	}
	if f.once {
		out, err := loop.Pass(ctx)
		fmt.Fprintln(cmd.OutOrStdout(), out.Decision.Reason)
		return err
	}

	if s.Etcd == nil {
		s.Log.Info("autoscaler running as the only replica (file state has no leader election; use state.backend: etcd for replicas)")
		metrics.SetLeader(true)
		return ignoreCanceled(loop.Run(ctx))
	}
	el := etcd.NewElector(s.Etcd, time.Duration(a.LeaseTTL))
	return ignoreCanceled(autoscaler.Lead(ctx, el, identity(), loop, metrics, s.Log))
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// identity names this replica in the election: host and PID.
func identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// sourceOptions checks the demand source flags.
func (f *autoscaleFlags) sourceOptions() (session.SourceOptions, error) {
	o := session.SourceOptions{Kind: f.source, Kubeconfig: f.kubeconfig}
	switch f.source {
	case "", "swarm", "kubernetes":
	default:
		return o, fmt.Errorf("--source %q: use swarm or kubernetes", f.source)
	}
	if f.dockerHost != "" {
		path, ok := strings.CutPrefix(f.dockerHost, "unix://")
		if !ok {
			return o, fmt.Errorf("--docker-host %q: use unix:///path/to/docker.sock", f.dockerHost)
		}
		o.DockerSocket = path
	}
	return o, nil
}
