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
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/provisionhq/provision/state/etcd/transport"
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

// Config says where the state lives and how to reach it. Only Endpoints
// and Cluster are required.
type Config struct {
	// Endpoints are etcd client URLs, e.g. https://etcd-1:2379. Plaintext
	// (http://) is refused to any host but this machine unless Insecure;
	// see package transport for the rules.
	Endpoints []string
	Cluster   string // the cluster whose state this is; no "/"
	Prefix    string // key prefix shared by all clusters; default DefaultPrefix
	// TLS, when set, secures every connection: etcd's certificate is
	// checked against RootCAs (the system's roots when nil), and
	// Certificates holds the client certificate etcd's --client-cert-auth
	// asks for (transport.Files.Load builds one from PEM files). An
	// https:// endpoint turns TLS on with the system's roots when TLS is
	// nil.
	TLS *tls.Config
	// Username and Password log in to an etcd with authentication enabled
	// (etcdctl auth enable); both or neither.
	Username string
	Password Password
	// Insecure allows plaintext endpoints that are not on this machine, for
	// a network that is trusted. It does not weaken TLS.
	Insecure bool
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
	useTLS := transport.UsesTLS(c.Endpoints, c.TLS != nil)
	for _, ep := range c.Endpoints {
		if err := transport.Check(ep, useTLS, c.Insecure); err != nil {
			return c, fmt.Errorf("etcd state backend: %w", err)
		}
	}
	switch {
	case useTLS && c.TLS == nil:
		c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	case useTLS:
		c.TLS = c.TLS.Clone()
		c.TLS.MinVersion = max(c.TLS.MinVersion, tls.VersionTLS12)
	}
	if c.Username == "" && !c.Password.IsZero() {
		return c, errors.New("etcd state backend: a password without a user name")
	}
	if c.Username != "" && c.Password.IsZero() {
		return c, fmt.Errorf("etcd state backend: user %q has no password (set %s, or state.password_file in the plan)", c.Username, EnvPassword)
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
	if cfg.Username != "" && cfg.TLS == nil && !allLoopback(cfg.Endpoints) {
		cfg.Logger.Warn("the etcd password crosses the network unencrypted: the endpoints are plaintext (state.insecure); use TLS",
			"endpoints", cfg.Endpoints, "user", cfg.Username)
	}
	// clientv3.New does not wait for a connection: ask once, so that a wrong
	// endpoint, certificate or password fails here rather than on first use.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if cfg.Username != "" {
		// clientv3.New logs in before it returns, and reports a connection
		// that never came up as a bare deadline: check the connection
		// first, without logging in.
		if err := checkConnection(pctx, life, cfg); err != nil {
			end()
			return nil, fmt.Errorf("connect to etcd %v%s: %w", cfg.Endpoints, as(cfg), err)
		}
	}
	client, err := clientv3.New(clientConfig(life, cfg))
	if err != nil {
		end()
		return nil, fmt.Errorf("connect to etcd %v%s: %w", cfg.Endpoints, as(cfg), rpctypes.Error(err))
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
	if err := probe(pctx, client, b.stateKey, cfg); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to etcd %v%s: %w", cfg.Endpoints, as(cfg), err)
	}
	return b, nil
}

// checkConnection connects as nobody: only a connection that does not
// come up is an error, since etcd refusing an anonymous read is expected.
func checkConnection(ctx, life context.Context, cfg Config) error {
	cfg.Username, cfg.Password = "", Password{}
	// The client logs etcd's refusal of the anonymous read as a warning on
	// every command; it is the expected answer, not news.
	cfg.Logger = slog.New(slog.DiscardHandler)
	client, err := clientv3.New(clientConfig(life, cfg))
	if err != nil {
		return err
	}
	defer client.Close()
	if err := probe(ctx, client, "/", cfg); ctx.Err() != nil {
		return err
	}
	return nil
}

// probe asks etcd for key once. It calls the KV API on the client's own
// connection (its interceptors and login included) rather than through
// clientv3's Get, which reports a connection that never came up as a bare
// "context deadline exceeded" and drops why: a refused TLS handshake, an
// unknown CA.
func probe(ctx context.Context, client *clientv3.Client, key string, cfg Config) error {
	kv := pb.NewKVClient(client.ActiveConnection())
	_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(key), CountOnly: true}, grpc.WaitForReady(true))
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil:
		err = rpctypes.Error(err)
		if cfg.Username == "" && (errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty)) {
			return fmt.Errorf("%w (etcd has authentication enabled: set state.username, and the password in %s or state.password_file)", err, EnvPassword)
		}
		return err
	}
	why := status.Convert(err).Message()
	if why == "" || why == ctx.Err().Error() {
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
	var hint string
	switch {
	case cfg.TLS == nil:
		hint = " (if etcd serves TLS, use https:// and state.tls)"
	case len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil:
		hint = " (if etcd requires client certificates, give one: state.tls.cert and state.tls.key)"
	}
	return fmt.Errorf("no answer: %s%s: %w", why, hint, ctx.Err())
}

// clientConfig is the one client configuration of a Backend: its state
// calls, its lock and its elections all share the client built from it.
func clientConfig(life context.Context, cfg Config) clientv3.Config {
	return clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     life,
		Logger:      zapToSlog(life, cfg.Logger),
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password.secret,
	}
}

// as says who connects, for errors: the user, never the password.
func as(cfg Config) string {
	if cfg.Username == "" {
		return ""
	}
	return fmt.Sprintf(" as user %q", cfg.Username)
}

func allLoopback(endpoints []string) bool {
	for _, ep := range endpoints {
		if err := transport.Check(ep, false, false); err != nil {
			return false
		}
	}
	return true
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
