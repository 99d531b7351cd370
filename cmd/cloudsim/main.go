// Command cloudsim serves emulators of the EC2, GCE and OpenStack APIs on
// localhost, so provision's cloud providers run their real SDK code paths
// with no account. With --backing docker each instance is a real local host
// (a docker container configured from its user-data), so bootstrap and
// cluster join run against "cloud" machines.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/dockerhost"
	"github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/cloudsim/gce"
	"github.com/provisionhq/provision/cloudsim/openstack"
	"github.com/provisionhq/provision/cloudsim/ratelimit"
)

type config struct {
	awsAddr, gcpAddr, osAddr string
	backing, group, envFile  string
	faults                   cloudsim.Faults
	quota, noCapacity        string
	noSpotCapacity           string
	// Request faults: one value for every cloud or values per cloud.
	serverErrors, resets, latency string
	invisible                     string
	rateLimits                    string
	seed                          uint64
}

func main() {
	var c config
	flag.StringVar(&c.awsAddr, "aws", "127.0.0.1:4566", "listen address of the EC2 emulator")
	flag.StringVar(&c.gcpAddr, "gcp", "127.0.0.1:4567", "listen address of the GCE emulator")
	flag.StringVar(&c.osAddr, "openstack", "127.0.0.1:4568", "listen address of the OpenStack (Keystone, Nova, Neutron) emulator")
	flag.StringVar(&c.backing, "backing", "none", "what instances are: none (records with made-up addresses) or docker (real local hosts)")
	flag.StringVar(&c.group, "group", "cloudsim", "docker backing: the network and label group of the instances' containers")
	flag.StringVar(&c.envFile, "env-file", "", "write the environment that points provision at cloudsim to this file (sh syntax)")
	flag.Float64Var(&c.faults.ThrottleRate, "throttle", 0, "fraction of API calls refused as throttled (0..1)")
	flag.DurationVar(&c.faults.PendingFor, "pending", 2*time.Second, "how long new instances stay pending")
	flag.StringVar(&c.invisible, "invisible", "", "how long new instance IDs are invisible to reads (eventual consistency, as EC2 documents; Nova and GCE lists are consistent), for every cloud (2s) or per cloud (aws=2s)")
	flag.StringVar(&c.quota, "quota", "", "instance quotas per cloud, e.g. aws=2,gcp=10")
	flag.StringVar(&c.noCapacity, "no-capacity", "", "clouds that have no capacity, e.g. aws,openstack")
	flag.StringVar(&c.noSpotCapacity, "no-spot-capacity", "", "clouds that refuse spot/preemptible creates for capacity (on-demand still works), e.g. aws,gcp")
	flag.StringVar(&c.serverErrors, "server-errors", "", "fraction of API requests answered 500 or 503 in the cloud's error shape (0..1), for every cloud (0.1) or per cloud (aws=0.1,gcp=0.05)")
	flag.StringVar(&c.resets, "resets", "", "fraction of API requests whose connection is reset with no answer (0..1), for every cloud or per cloud, e.g. aws=0.05")
	flag.Float64Var(&c.faults.AfterWork, "after-work", 0.5, "share of --server-errors and --resets that strike after the request did its work (it took effect, its answer is lost); the rest strike before it (0..1)")
	flag.StringVar(&c.rateLimits, "rate-limits", "none", "EC2 API throttling: none, or published (EC2's documented request and resource token buckets, answered with RequestLimitExceeded; GCE and OpenStack publish none that cloudsim enforces)")
	flag.Uint64Var(&c.seed, "seed", 0, "seed of the fault draws (throttling, server errors, resets): with the same seed the Nth request to a cloud meets the same fault on every run; 0 takes one from the clock")
	flag.StringVar(&c.latency, "latency", "", "latency added to every API request, for every cloud (200ms) or per cloud (aws=200ms,openstack=1s)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: cloudsim [flags]

Serves EC2 (Query/XML), GCE (REST/JSON with operations) and OpenStack
(Keystone v3, Nova, Neutron) emulators. Point provision at them with the
environment printed at start (or written by --env-file). Each server answers
GET /_sim/calls with its API call counters, GET /_sim/faults with the
request faults it injected (--server-errors, --resets) and GET
/_sim/instances with the instances it holds (alive, and how many were ever
launched).

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, logger); err != nil {
		fmt.Fprintln(os.Stderr, "cloudsim:", err)
		os.Exit(1)
	}
}

func perCloud(spec string) (map[string]string, error) {
	out := map[string]string{}
	if spec == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			v = "true"
		}
		switch k {
		case "aws", "gcp", "openstack":
			out[k] = v
		default:
			return nil, fmt.Errorf("unknown cloud %q (use aws, gcp, openstack)", k)
		}
	}
	return out, nil
}

// eachCloud parses a flag that takes one value for every cloud ("0.1",
// "200ms") or values per cloud ("aws=0.1,gcp=0.05").
func eachCloud(spec string) (map[string]string, error) {
	if spec == "" || strings.Contains(spec, "=") {
		return perCloud(spec)
	}
	if _, err := perCloud(spec); err == nil {
		return nil, fmt.Errorf("%q names clouds without values (use aws=0.1 or one value for all)", spec)
	}
	out := map[string]string{}
	for _, cloud := range clouds {
		out[cloud] = spec
	}
	return out, nil
}

// clouds are the emulated clouds, in the order their servers start.
var clouds = []string{"aws", "gcp", "openstack"}

// faultsFor applies the per-cloud flags to the faults every cloud shares.
func faultsFor(c config) (map[string]cloudsim.Faults, error) {
	quotas, err := perCloud(c.quota)
	if err != nil {
		return nil, fmt.Errorf("--quota: %w", err)
	}
	noCap, err := perCloud(c.noCapacity)
	if err != nil {
		return nil, fmt.Errorf("--no-capacity: %w", err)
	}
	noSpot, err := perCloud(c.noSpotCapacity)
	if err != nil {
		return nil, fmt.Errorf("--no-spot-capacity: %w", err)
	}
	if noSpot["openstack"] != "" {
		return nil, errors.New("--no-spot-capacity: openstack has no spot instances")
	}
	serverErrors, err := eachCloud(c.serverErrors)
	if err != nil {
		return nil, fmt.Errorf("--server-errors: %w", err)
	}
	resets, err := eachCloud(c.resets)
	if err != nil {
		return nil, fmt.Errorf("--resets: %w", err)
	}
	latency, err := eachCloud(c.latency)
	if err != nil {
		return nil, fmt.Errorf("--latency: %w", err)
	}
	invisible, err := eachCloud(c.invisible)
	if err != nil {
		return nil, fmt.Errorf("--invisible: %w", err)
	}
	if a := c.faults.AfterWork; a < 0 || a > 1 {
		return nil, fmt.Errorf("--after-work %g: want a share from 0 to 1", a)
	}
	out := map[string]cloudsim.Faults{}
	for _, cloud := range clouds {
		f := c.faults
		if q, ok := quotas[cloud]; ok {
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--quota %s=%q: want a whole number", cloud, q)
			}
			f.InstanceQuota = n
		}
		f.NoCapacity = noCap[cloud] != ""
		f.SpotNoCapacity = noSpot[cloud] != ""
		if f.ServerErrorRate, err = rate(serverErrors, cloud); err != nil {
			return nil, fmt.Errorf("--server-errors %w", err)
		}
		if f.ResetRate, err = rate(resets, cloud); err != nil {
			return nil, fmt.Errorf("--resets %w", err)
		}
		if f.ServerErrorRate+f.ResetRate > 1 {
			return nil, fmt.Errorf("--server-errors and --resets of %s add up to more than every request (%g + %g)", cloud, f.ServerErrorRate, f.ResetRate)
		}
		if l, ok := latency[cloud]; ok {
			if f.Latency, err = time.ParseDuration(l); err != nil || f.Latency < 0 {
				return nil, fmt.Errorf("--latency %s=%q: want a duration such as 200ms", cloud, l)
			}
		}
		if v, ok := invisible[cloud]; ok {
			if f.InvisibleFor, err = time.ParseDuration(v); err != nil || f.InvisibleFor < 0 {
				return nil, fmt.Errorf("--invisible %s=%q: want a duration such as 2s", cloud, v)
			}
		}
		out[cloud] = f
	}
	return out, nil
}

// rate reads one cloud's fraction of requests (0 when not given).
func rate(spec map[string]string, cloud string) (float64, error) {
	v, ok := spec[cloud]
	if !ok {
		return 0, nil
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, fmt.Errorf("%s=%q: want a fraction from 0 to 1", cloud, v)
	}
	return r, nil
}

func run(ctx context.Context, c config, logger *slog.Logger) error {
	faults, err := faultsFor(c)
	if err != nil {
		return err
	}
	seed := c.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	logger.Info("fault draws seeded", "seed", seed)
	sims := map[string]*cloudsim.Sim{}
	for i, cloud := range clouds {
		sims[cloud] = cloudsim.NewSim(faults[cloud], seed+uint64(i))
	}

	var backing cloudsim.Backing
	var stopAll func(context.Context) error
	switch c.backing {
	case "none":
	case "docker":
		b, err := dockerhost.New(ctx, c.group, logger)
		if err != nil {
			return err
		}
		backing, stopAll = b, b.StopAll
	default:
		return fmt.Errorf("--backing %q: use none or docker", c.backing)
	}

	var ec2Limits ec2.Limiter // nil: unthrottled
	switch c.rateLimits {
	case "none":
	case "published":
		ec2Limits = ratelimit.NewEC2()
	default:
		return fmt.Errorf("--rate-limits %q: use none or published", c.rateLimits)
	}

	listeners := map[string]net.Listener{}
	for cloud, addr := range map[string]string{"aws": c.awsAddr, "gcp": c.gcpAddr, "openstack": c.osAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s emulator: %w", cloud, err)
		}
		listeners[cloud] = l
	}
	base := func(cloud string) string { return "http://" + listeners[cloud].Addr().String() }
	handlers := map[string]http.Handler{
		"aws":       ec2.New(sims["aws"], ec2.Options{Region: "us-east-1", Backing: backing, Limits: ec2Limits, Logger: logger.With("cloud", "aws")}),
		"gcp":       gce.New(sims["gcp"], gce.Options{Backing: backing, Logger: logger.With("cloud", "gcp")}),
		"openstack": openstack.New(sims["openstack"], openstack.Options{Backing: backing, Logger: logger.With("cloud", "openstack")}),
	}

	env := environment(base)
	if c.envFile != "" {
		if err := os.WriteFile(c.envFile, []byte(env), 0o644); err != nil {
			return fmt.Errorf("--env-file: %w", err)
		}
	}
	fmt.Fprintf(os.Stdout, "# cloudsim is serving; point provision at it with:\n%s", env)

	g, gctx := errgroup.WithContext(ctx)
	var servers []*http.Server
	for cloud, h := range handlers {
		mux := http.NewServeMux()
		sim := sims[cloud]
		mux.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			writeCounts(w, sim.CallCounts())
		})
		mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			f := sim.FaultCounts()
			_ = json.NewEncoder(w).Encode(map[string]int{"server_errors": f.ServerErrors, "resets": f.Resets, "after_work": f.AfterWork})
		})
		if inv, ok := h.(interface{ Inventory() cloudsim.Inventory }); ok {
			mux.HandleFunc("GET /_sim/instances", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(inv.Inventory())
			})
		}
		mux.Handle("/", h)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		l := listeners[cloud]
		g.Go(func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s emulator: %w", cloud, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
		return nil
	})
	err = g.Wait()
	if stopAll != nil {
		// Instances die with the cloud: no container outlives cloudsim.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if serr := stopAll(sctx); serr != nil {
			logger.Warn("remove instance hosts", "err", serr)
		}
	}
	return err
}

// environment is what points the SDKs at cloudsim: endpoints and dummy
// credentials only; no provider code path differs from production.
func environment(base func(string) string) string {
	return fmt.Sprintf(`export AWS_ENDPOINT_URL=%s
export AWS_ACCESS_KEY_ID=cloudsim AWS_SECRET_ACCESS_KEY=cloudsim AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export PROVISION_GCP_ENDPOINT=%s GOOGLE_CLOUD_PROJECT=cloudsim
export OS_AUTH_URL=%s/identity/v3 OS_USERNAME=cloudsim OS_PASSWORD=cloudsim OS_PROJECT_NAME=cloudsim OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne
`, base("aws"), base("gcp"), base("openstack"))
}

func writeCounts(w http.ResponseWriter, counts map[string]int) {
	// encoding/json sorts map keys: stable output for people and scripts.
	_ = json.NewEncoder(w).Encode(counts)
}
