package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultElectionTTL is how long a dead leader keeps leading before
// another candidate takes over.
const DefaultElectionTTL = 10 * time.Second

var (
	// ErrNoLeader: nobody leads the election now.
	ErrNoLeader = errors.New("no leader elected")
	// ErrCampaigning: Campaign on an Elector that is already campaigning or
	// leading; use one Elector per concurrent candidate.
	ErrCampaigning = errors.New("elector is already campaigning or leading")
)

// Elector campaigns in the cluster's leader election, so that of several
// replicas (of the autoscaler) exactly one acts. Each candidate holds a key
// on its own lease under <prefix>/<cluster>/leader/; the oldest key leads.
// A leader that dies stops renewing its lease, and the next candidate leads
// within the TTL.
type Elector struct {
	b      *Backend
	prefix string // candidates' keys are under prefix + "/"
	ttl    int64  // seconds

	mu   sync.Mutex
	busy bool        // a Campaign or a leadership is under way
	lead *leadership // the current leadership, nil when not leading
}

// leadership is this elector's winning key: leading means it is still the
// oldest key under the prefix, with the revision it was created at.
type leadership struct {
	key string
	rev int64
}

// NewElector returns an elector sharing b's connection. ttl is the lease
// TTL, rounded up to whole seconds; 0 means DefaultElectionTTL.
func NewElector(b *Backend, ttl time.Duration) *Elector {
	if ttl <= 0 {
		ttl = DefaultElectionTTL
	}
	return &Elector{b: b, prefix: b.base + "/leader", ttl: ttlSeconds(ttl)}
}

// Campaign blocks until this process leads as identity, or ctx ends. It
// returns lead, a context cancelled as soon as leadership is lost (the
// lease expired or was revoked, the connection is gone, ctx ended, or
// resign was called), and resign, which hands leadership over at once and
// is safe to call more than once. Work done as leader runs under lead;
// before an action that must not be taken twice, check IsLeader.
func (e *Elector) Campaign(ctx context.Context, identity string) (lead context.Context, resign func(), err error) {
	if identity == "" {
		return nil, nil, fmt.Errorf("campaign for leader of %s: empty identity", e.prefix)
	}
	e.mu.Lock()
	if e.busy {
		e.mu.Unlock()
		return nil, nil, fmt.Errorf("campaign for leader of %s as %q: %w", e.prefix, identity, ErrCampaigning)
	}
	e.busy = true
	e.mu.Unlock()

	session, err := e.newSession(ctx)
	if err != nil {
		e.finish()
		return nil, nil, fmt.Errorf("campaign for leader of %s as %q: %w", e.prefix, identity, err)
	}
	election := concurrency.NewElection(session, e.prefix)
	if err := e.campaign(ctx, session, election, identity); err != nil {
		e.release(ctx, session, identity)
		return nil, nil, fmt.Errorf("campaign for leader of %s as %q: %w", e.prefix, identity, err)
	}

	lead, cancel := context.WithCancel(ctx)
	var once sync.Once
	resign = func() {
		once.Do(func() {
			cancel()
			e.release(ctx, session, identity)
		})
	}
	e.mu.Lock()
	e.lead = &leadership{key: election.Key(), rev: election.Rev()}
	e.mu.Unlock()
	e.b.mu.Lock()
	if e.b.closed {
		e.b.mu.Unlock()
		resign()
		return nil, nil, fmt.Errorf("campaign for leader of %s as %q: %w", e.prefix, identity, errClosed)
	}
	e.b.resigns[e] = resign
	e.b.mu.Unlock()
	e.b.log.Info("leading", "election", e.prefix, "identity", identity)

	go func() {
		select {
		case <-session.Done():
			e.b.log.Warn("lost leadership: the election lease expired or the connection to etcd is gone",
				"election", e.prefix, "identity", identity)
		case <-lead.Done():
		}
		resign()
	}()
	return lead, resign, nil
}

// newSession grants the session's lease with a bounded call, since
// concurrency.NewSession would wait on the backend's lifetime context
// only. The session itself lives until resign, whatever ctx does.
func (e *Elector) newSession(ctx context.Context) (*concurrency.Session, error) {
	gctx, cancel := e.b.call(ctx)
	defer cancel()
	grant, err := e.b.client.Grant(gctx, e.ttl)
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	session, err := concurrency.NewSession(e.b.client,
		concurrency.WithLease(grant.ID), concurrency.WithTTL(int(e.ttl)), concurrency.WithContext(e.b.life))
	if err != nil {
		return nil, fmt.Errorf("keep lease alive: %w", err)
	}
	return session, nil
}

// campaign waits for election.Campaign, which keeps waiting after the
// session's lease is gone and then returns as if elected with no key: so
// losing the session ends the wait, and a win is confirmed before it
// counts.
func (e *Elector) campaign(ctx context.Context, session *concurrency.Session, election *concurrency.Election, identity string) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(session.Ctx(), cancel)
	defer stop()
	if err := election.Campaign(cctx, identity); err != nil {
		switch {
		case ctx.Err() != nil:
		case e.b.life.Err() != nil:
			return errClosed
		case session.Ctx().Err() != nil:
			return errors.New("election lease lost while waiting")
		}
		return err
	}
	first, err := e.first(ctx)
	if err != nil {
		return fmt.Errorf("confirm leadership: %w", err)
	}
	if first == nil || string(first.Key) != election.Key() || first.CreateRevision != election.Rev() {
		return errors.New("election lease lost while waiting")
	}
	return nil
}

// release ends a campaign or leadership: it stops renewing the lease and
// revokes it, which deletes the candidate's key so that the next candidate
// leads at once. It ignores ctx's cancellation: releasing is most needed
// when ctx has ended.
func (e *Elector) release(ctx context.Context, session *concurrency.Session, identity string) {
	lost := session.Ctx().Err() != nil
	session.Orphan()
	rctx, cancel := e.b.call(context.WithoutCancel(ctx))
	defer cancel()
	_, err := e.b.client.Revoke(rctx, session.Lease())
	// A lost lease or a closed backend cannot be revoked, and needs not be.
	if err != nil && !lost && e.b.life.Err() == nil {
		e.b.log.Warn("release election lease; it expires by itself within its TTL",
			"election", e.prefix, "identity", identity, "ttl_seconds", e.ttl, "err", err)
	}
	e.finish()
}

func (e *Elector) finish() {
	e.b.mu.Lock()
	delete(e.b.resigns, e)
	e.b.mu.Unlock()
	e.mu.Lock()
	e.lead, e.busy = nil, false
	e.mu.Unlock()
}

// IsLeader reports whether this elector leads right now, asking etcd (a
// linearizable read), so that a leader deposed without knowing it yet (its
// lease expired during a pause) gets false. Run it just before an action
// that must not be taken by two replicas; the answer holds for at most the
// TTL.
func (e *Elector) IsLeader(ctx context.Context) (bool, error) {
	e.mu.Lock()
	l := e.lead
	e.mu.Unlock()
	if l == nil {
		return false, nil
	}
	first, err := e.first(ctx)
	if err != nil {
		return false, fmt.Errorf("check leadership of %s: %w", e.prefix, err)
	}
	return first != nil && string(first.Key) == l.key && first.CreateRevision == l.rev, nil
}

// Leader returns the identity of the current leader, or ErrNoLeader.
func (e *Elector) Leader(ctx context.Context) (string, error) {
	first, err := e.first(ctx)
	if err != nil {
		return "", fmt.Errorf("find leader of %s: %w", e.prefix, err)
	}
	if first == nil {
		return "", fmt.Errorf("find leader of %s: %w", e.prefix, ErrNoLeader)
	}
	return string(first.Value), nil
}

// first returns the oldest candidate key, the leader's, or nil.
func (e *Elector) first(ctx context.Context) (*mvccpb.KeyValue, error) {
	ctx, cancel := e.b.call(ctx)
	defer cancel()
	resp, err := e.b.client.Get(ctx, e.prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}
