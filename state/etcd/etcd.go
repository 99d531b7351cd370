// Package etcd owns the shared state backend: one cluster's state document
// kept in etcd, with a lease-backed lock so that a crashed holder frees it,
// and the leader election that lets one of several autoscaler replicas act.
//
// Keys, under Config.Prefix and Config.Cluster:
//
//	<prefix>/<cluster>/state         the state document (JSON)
//	<prefix>/<cluster>/state.backup  the version before the last Write
//	<prefix>/<cluster>/lock          the holder's state.LockInfo, on a lease
//	<prefix>/<cluster>/leader/<id>   election candidates, on their leases
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnvEndpoints names the variable EndpointsFromEnv reads.
const EnvEndpoints = "PROVISION_ETCD_ENDPOINTS"

// Defaults for the zero fields of Config.
const (
	DefaultPrefix         = "/provision"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	// DefaultLockTTL is how long a crashed holder keeps the state lock. Long
	// enough that a network blip or a GC pause does not drop the lock in
	// the middle of an apply, short enough that nobody waits for long.
	DefaultLockTTL = 15 * time.Second
)

// Config says where the state lives. Only Endpoints and Cluster are required.
type Config struct {
	Endpoints []string // etcd client URLs, e.g. http://etcd-1:2379
	Cluster   string   // the cluster whose state this is; no "/"
	Prefix    string   // key prefix shared by all clusters; default DefaultPrefix
	// DialTimeout bounds New's wait for etcd to answer; default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds each call's round trips to etcd, whatever the
	// caller's deadline; default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// LockTTL is the lease TTL of the state lock: how long the lock outlives
	// a holder that died without unlocking. Rounded up to whole seconds;
	// default DefaultLockTTL.
	LockTTL time.Duration
	Logger  *slog.Logger // default slog.Default()
}

// EndpointsFromEnv returns the endpoints listed, comma-separated, in
// PROVISION_ETCD_ENDPOINTS, or nil.
func EndpointsFromEnv() []string {
	var eps []string
	for ep := range strings.SplitSeq(os.Getenv(EnvEndpoints), ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	return eps
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, fmt.Errorf("etcd state backend: no endpoints (set %s)", EnvEndpoints)
	}
	if c.Cluster == "" || strings.Contains(c.Cluster, "/") {
		return c, fmt.Errorf("etcd state backend: cluster name %q must be non-empty and have no \"/\"", c.Cluster)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	c.Prefix = strings.TrimRight(c.Prefix, "/")
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.LockTTL <= 0 {
		c.LockTTL = DefaultLockTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// ttlSeconds turns d into an etcd lease TTL: whole seconds, at least one.
func ttlSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// Backend is a state.Backend in etcd, shared by everyone pointing at the
// same endpoints, prefix and cluster.
type Backend struct {
	client  *clientv3.Client
	log     *slog.Logger
	timeout time.Duration
	lockTTL int64 // seconds

	base                         string // <prefix>/<cluster>
	stateKey, backupKey, lockKey string

	// life is the parent of everything that outlives one call (lock
	// keepalives, election sessions); Close ends it.
	life context.Context
	end  context.CancelFunc

	mu   sync.Mutex
	held map[string]*heldLock // lock id → its lease
	// resigns holds the resign of each leadership won with an Elector on
	// this backend, for Close.
	resigns map[*Elector]func()
	closed  bool // set by Close: nothing new is held after that

	closeOnce sync.Once
	closeErr  error
}

// New connects to etcd and checks that it answers within cfg.DialTimeout.
// ctx bounds that check; the backend itself lives until Close.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// The client and lock keepalives outlive this call: keep ctx's values,
	// not its end.
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     life,
		Logger:      zapToSlog(life, cfg.Logger),
	})
	if err != nil {
		end()
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	base := cfg.Prefix + "/" + cfg.Cluster
	b := &Backend{
		client:    client,
		log:       cfg.Logger,
		timeout:   cfg.RequestTimeout,
		lockTTL:   ttlSeconds(cfg.LockTTL),
		base:      base,
		stateKey:  base + "/state",
		backupKey: base + "/state.backup",
		lockKey:   base + "/lock",
		life:      life,
		end:       end,
		held:      map[string]*heldLock{},
		resigns:   map[*Elector]func(){},
	}
	// clientv3.New does not wait for a connection: ask once, so that a wrong
	// endpoint fails here rather than on first use.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := client.Get(pctx, b.stateKey, clientv3.WithCountOnly()); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return b, nil
}

// Close resigns the leaderships won with an Elector on this backend and
// releases the locks it still holds, so that nobody waits out a TTL after
// a clean shutdown, then closes the connection. Closing again does nothing.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Backend) close() error {
	b.mu.Lock()
	held, resigns := b.held, b.resigns
	b.held, b.resigns, b.closed = nil, nil, true
	b.mu.Unlock()
	for _, resign := range resigns {
		resign()
	}
	var errs []error
	for id, h := range held {
		if err := b.release(b.life, h); err != nil {
			errs = append(errs, fmt.Errorf("release state lock %s: %w", id, err))
		}
	}
	b.end()
	if err := b.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close etcd state backend %s: %w", b.base, err)
	}
	return nil
}

// errClosed: a lock or leadership won while Close ran, already given up.
var errClosed = errors.New("etcd state backend is closed")

// call bounds one call's round trips to etcd.
func (b *Backend) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.timeout)
}
