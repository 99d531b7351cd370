// Package openstack owns the OpenStack provider: pool settings, creating
// Nova servers with per-machine cloud-init user-data, finding them by the
// metadata provision puts on them, and deleting them, all through
// gophercloud/v2 (Keystone v3, Nova, Glance, Neutron).
//
// Credentials come from the standard chain only: clouds.yaml when OS_CLOUD
// is set (OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
// ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml), else the
// OS_* variables (password or application credential). cloudsim/openstack
// is just another OS_AUTH_URL: no code path differs.
//
// Batch and user-data design: Create sends ONE servers.create with
// min_count = max_count = N for the missing machines of a pool (split only
// where Nova's 64 KiB user_data or metadata limits require). Nova gives
// every server of the call the same user_data and metadata, so the
// user_data is cloudinit.MultiPart (one cloud-config per machine, labelled
// with its launch index, which cloud-init's OpenStack datasource filters
// on) and the metadata carries the batch's ordered machine IDs; Nova names
// the servers "<batch>-1".."<batch>-N" in launch-index order, which maps
// each server to its machine (batch.go). Trade-off: every server of a batch
// can read its siblings' private host keys from the metadata service; they
// share a pool, a cluster and its login keys. A batch of one is a plain
// create named after its machine with its own user-data. Everything else
// is batched too: one paginated list finds what exists before creating,
// one list per poll round watches every new server at once, and one list
// finds the servers Delete removes.
//
// Idempotency: Nova has no idempotency token. Servers carry metadata
// provision-cluster and provision-pool, and provision-machine (a single
// create) or their batch's manifest; Create lists first and only creates
// machines that have no server, so a partly created batch is completed by
// a smaller batch. A create is retried at once (by the gate) only when
// Nova refused it outright (429 or 413, which are not processed). After a
// 5xx or a connection lost before the answer, Nova may or may not have
// made the servers, so the chunk's machines are looked up by their
// metadata first and only those with no server are created again
// (createOnce). This relies on Nova listing a server as soon as its create
// is accepted, as it does (build requests are listed).
//
// Retries: every request goes through the provider's gate
// (providers/gate), the one layer that retries; gophercloud retries
// nothing (no RetryFunc or RetryBackoffFunc is set). Nova has no batch
// delete: one servers.delete per machine is the floor, and the wait for
// them to be gone, like the wait for new servers, is one list a poll.
package openstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	osconfig "github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/gate"
)

const (
	metaCluster = "provision-cluster"
	metaPool    = "provision-pool"
	metaMachine = "provision-machine"
	metaRole    = "provision-role"

	// createConcurrency bounds servers.create calls in flight (one per
	// pool batch or user_data-sized chunk of one). Nova's API is usually
	// rate-limited per project at a few requests a second; 8 in flight
	// under the token bucket does not trip it.
	createConcurrency = 8
	// deleteConcurrency bounds servers.delete calls in flight (Nova has
	// no batch delete), for the same reason.
	deleteConcurrency = 8
	// defaultTimeout bounds a Create or Delete whose ctx has no deadline.
	defaultTimeout = 15 * time.Minute
	// pageSize is the list page size: Nova's default max_limit.
	pageSize = 1000
)

// Provider is the openstack provider.
type Provider struct {
	pc      *gophercloud.ProviderClient
	cfg     config
	log     *slog.Logger
	cluster string
	gate    *gate.Gate

	mu      sync.Mutex
	clients map[string]*clients // by region
	names   map[string]string   // region/kind/name → ID
	regions map[string]bool     // regions this provider has created in
}

// config is what New reads from the environment; tests build it directly.
type config struct {
	auth     gophercloud.AuthOptions
	endpoint gophercloud.EndpointOpts
	tls      *tls.Config

	poll          time.Duration // between wait rounds; 2s when zero
	backoff       retry.Policy  // the gate's, for retried calls
	maxRetryAfter time.Duration // cap on a Retry-After we honour; 30s when zero
	// rate and burst shape the gate's one bucket for every request: Nova
	// publishes no limits (a deployment sets its own in front of the API,
	// usually a few requests a second per project); 10/s, 20 when zero.
	rate, burst float64
}

// clients are the service clients of one region.
type clients struct {
	region  string
	compute *gophercloud.ServiceClient
	image   *gophercloud.ServiceClient
	network *gophercloud.ServiceClient
}

// New returns the openstack provider, authenticated against Keystone.
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	cfg, err := configFromEnv()
	if err != nil {
		return nil, err
	}
	return newProvider(ctx, env, cfg)
}

var _ providers.Provider = (*Provider)(nil)

func newProvider(ctx context.Context, env providers.Env, cfg config) (*Provider, error) {
	if cfg.poll <= 0 {
		cfg.poll = 2 * time.Second
	}
	if cfg.backoff.Initial <= 0 {
		cfg.backoff = retry.Policy{Initial: 500 * time.Millisecond, Max: 10 * time.Second, MaxAttempts: 6}
	}
	if cfg.maxRetryAfter > 0 {
		cfg.backoff.MaxRetryAfter = cfg.maxRetryAfter
	}
	if cfg.rate <= 0 {
		cfg.rate, cfg.burst = 10, 20
	}
	cfg.auth.AllowReauth = true
	if cfg.endpoint.Availability == "" {
		cfg.endpoint.Availability = gophercloud.AvailabilityPublic
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("provider", "openstack")
	p := &Provider{
		cfg: cfg, log: log, cluster: env.Cluster,
		gate: gate.New(gate.Options{
			Cloud:    "openstack",
			Requests: map[string]gate.Bucket{"api": {Rate: cfg.rate, Burst: int(cfg.burst)}},
			Group:    func(string) string { return "api" },
			InFlight: createConcurrency,
			Retry:    cfg.backoff,
			Logger:   log,
		}),
		clients: map[string]*clients{}, names: map[string]string{}, regions: map[string]bool{},
	}
	// Authenticating is retried like any call: a token request Keystone
	// failed (5xx, a lost connection) is simply asked for again.
	err := p.call(ctx, cfg.endpoint.Region, "", gate.Call{Action: "tokens.create"}, func(ctx context.Context) error {
		var err error
		p.pc, err = newProviderClient(ctx, cfg, env.HTTPClient)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("openstack: authenticate at %s: %w", cfg.auth.IdentityEndpoint, err)
	}
	if _, err := p.clientsFor(ctx, cfg.endpoint.Region); err != nil {
		return nil, err
	}
	// The plan's pools say which regions List and Delete must search, even
	// in a process that created nothing (a `down`).
	for _, set := range env.Pools {
		if r, ok := set["region"].(string); ok && r != "" {
			p.regions[r] = true
		}
	}
	return p, nil
}

// newProviderClient authenticates. An Env.HTTPClient is an emulator's own
// way in, so clouds.yaml's TLS settings are not laid over it.
func newProviderClient(ctx context.Context, cfg config, hc *http.Client) (*gophercloud.ProviderClient, error) {
	switch {
	case hc != nil:
		return osconfig.NewProviderClient(ctx, cfg.auth, osconfig.WithHTTPClient(*hc))
	case cfg.tls != nil:
		return osconfig.NewProviderClient(ctx, cfg.auth, osconfig.WithTLSConfig(cfg.tls))
	}
	return osconfig.NewProviderClient(ctx, cfg.auth)
}

// configFromEnv reads clouds.yaml (when OS_CLOUD is set) or OS_* variables.
func configFromEnv() (config, error) {
	if os.Getenv("OS_CLOUD") != "" {
		ao, eo, tlsCfg, err := clouds.Parse()
		if err != nil {
			return config{}, fmt.Errorf("openstack: clouds.yaml cloud %q: %w", os.Getenv("OS_CLOUD"), err)
		}
		return config{auth: ao, endpoint: eo, tls: tlsCfg}, nil
	}
	ao, err := authFromEnv(os.Getenv)
	if err != nil {
		return config{}, err
	}
	eo := gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME"), Availability: gophercloud.Availability(os.Getenv("OS_INTERFACE"))}
	return config{auth: ao, endpoint: eo}, nil
}

// authFromEnv builds AuthOptions from the OS_* variables python-openstackclient
// reads, with separate user and project domains (gophercloud's own
// AuthOptionsFromEnv has only one domain).
func authFromEnv(get func(string) string) (gophercloud.AuthOptions, error) {
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            get("OS_AUTH_URL"),
		Username:                    get("OS_USERNAME"),
		UserID:                      get("OS_USER_ID"),
		Password:                    get("OS_PASSWORD"),
		ApplicationCredentialID:     get("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   get("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: get("OS_APPLICATION_CREDENTIAL_SECRET"),
	}
	if ao.IdentityEndpoint == "" {
		return ao, errors.New("openstack: no credentials: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL and the other OS_* variables")
	}
	appCred := ao.ApplicationCredentialID != "" || ao.ApplicationCredentialName != ""
	if appCred {
		if ao.ApplicationCredentialSecret == "" {
			return ao, errors.New("openstack: OS_APPLICATION_CREDENTIAL_SECRET is not set")
		}
		ao.Password = ""
	} else if ao.Password == "" || (ao.Username == "" && ao.UserID == "") {
		return ao, errors.New("openstack: OS_USERNAME and OS_PASSWORD (or an application credential) are required")
	}
	userDomain := first(get("OS_USER_DOMAIN_NAME"), get("OS_DOMAIN_NAME"))
	userDomainID := first(get("OS_USER_DOMAIN_ID"), get("OS_DOMAIN_ID"))
	if ao.Username != "" && ao.UserID == "" {
		ao.DomainName, ao.DomainID = userDomain, userDomainID
		if ao.DomainName == "" && ao.DomainID == "" {
			ao.DomainName = "Default"
		}
	}
	if !appCred { // an application credential is already scoped
		projectID := first(get("OS_PROJECT_ID"), get("OS_TENANT_ID"))
		projectName := first(get("OS_PROJECT_NAME"), get("OS_TENANT_NAME"))
		if projectID != "" || projectName != "" {
			sc := &gophercloud.AuthScope{ProjectID: projectID, ProjectName: projectName}
			if projectID == "" {
				sc.DomainName = first(get("OS_PROJECT_DOMAIN_NAME"), userDomain)
				sc.DomainID = first(get("OS_PROJECT_DOMAIN_ID"), userDomainID)
				if sc.DomainName == "" && sc.DomainID == "" {
					sc.DomainName = "Default"
				}
				if sc.DomainID != "" {
					sc.DomainName = ""
				}
			}
			ao.Scope = sc
		}
	}
	return ao, nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// clientsFor returns the service clients of region ("" is the default).
// Finding an endpoint may ask the service for its versions (gophercloud's
// discovery), a read retried like any other; the lock is not held across
// it.
func (p *Provider) clientsFor(ctx context.Context, region string) (*clients, error) {
	if region == "" {
		region = p.cfg.endpoint.Region
	}
	p.mu.Lock()
	c, ok := p.clients[region]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	eo := p.cfg.endpoint
	eo.Region = region
	c = &clients{region: region}
	err := p.call(ctx, region, "", gate.Call{Action: "discovery"}, func(context.Context) error {
		var err error
		if c.compute, err = gopenstack.NewComputeV2(p.pc, eo); err != nil {
			return fmt.Errorf("openstack: compute endpoint in region %q: %w", region, err)
		}
		if c.image, err = gopenstack.NewImageV2(p.pc, eo); err != nil {
			return fmt.Errorf("openstack: image endpoint in region %q: %w", region, err)
		}
		if c.network, err = gopenstack.NewNetworkV2(p.pc, eo); err != nil {
			return fmt.Errorf("openstack: network endpoint in region %q: %w", region, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.clients[region]; ok {
		return prev, nil
	}
	p.clients[region] = c
	return c, nil
}

// call runs one API request through the gate, its error classified first.
// The gate retries it while it is throttled, honouring Retry-After
// (capped), and, unless it is a servers.create, while the cloud is
// unavailable (a 5xx, a connection lost before the answer): every other
// request reads, or deletes (twice is a 404, which is success). Nova does
// not process a 429/413 request, so retrying a create then is safe; after
// a 5xx or a lost connection the create may have happened, and createOnce
// looks for its servers before it creates again.
func (p *Provider) call(ctx context.Context, region, pool string, c gate.Call, f func(context.Context) error) error {
	creating := c.Action == actionCreate
	c.Idempotent = !creating
	return p.gate.Do(ctx, c, func(ctx context.Context) error {
		return p.classify(f(ctx), region, pool, creating)
	})
}

// actionCreate is servers.create, the one request that is not idempotent
// (Nova has no token) and whose 403 is Nova's quota refusal.
const actionCreate = "servers.create"

// withDeadline gives ctx the default deadline when it has none.
func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}
