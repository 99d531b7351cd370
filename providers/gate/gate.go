// Package gate owns the one way provision's cloud providers call their
// APIs: every request goes through a Gate, which shapes the request rate
// with token buckets per API action (the way the clouds meter it), bounds
// the requests in flight, and is the only layer that retries a failed
// request. Providers classify their cloud's errors into the providers kinds
// first; the gate decides by kind alone:
//
//   - providers.ErrThrottled: the cloud refused the request unprocessed.
//     It is sent again after a backoff with jitter, at least the cloud's
//     Retry-After (capped), for as long as the caller's context allows.
//   - providers.ErrUnavailable (a 5xx, a connection lost before the answer):
//     the request may or may not have taken effect. It is sent again only
//     when the Call says that is safe (a read, or a write that carries an
//     idempotency token), at most Policy.MaxAttempts times.
//   - anything else is the caller's to handle.
//
// A Call marked Poll is never retried here: the caller polls anyway, so its
// next poll is the retry, and a throttled or failed poll costs no extra
// request. The SDKs' own retryers are off (or retry nothing) in every
// provider, and the apply engine never re-runs a whole Create because one
// request was throttled: a throttled request is retried in this layer only.
package gate

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"golang.org/x/time/rate"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
)

// Bucket is a token bucket: Burst tokens at most, refilled at Rate per
// second. The clouds publish their limits in this shape (EC2) or as a
// quota per minute (GCE), which is a bucket refilled evenly.
type Bucket struct {
	Rate  float64
	Burst int
}

// Options shape a Gate. The zero value is usable (see the defaults).
type Options struct {
	// Cloud names the cloud in logs.
	Cloud string
	// Requests are the request buckets by name. A request takes one token
	// from the bucket named Group(action) (the action itself when Group
	// is nil), or, when no bucket has that name, from a bucket of its own
	// shaped like Requests[""]: EC2 meters each API action on its own.
	// Requests[""] is 10/s with a burst of 20 when unset.
	Requests map[string]Bucket
	// Group names the request bucket of an action; nil gives every action
	// its own (EC2). Clouds that meter groups of methods together (GCE's
	// reads, lists and writes; one limit for a whole OpenStack API) map
	// their actions here.
	Group func(action string) string
	// Resources are resource buckets by action: a request also takes
	// Call.Cost tokens (the instances it launches or ends) from its
	// action's resource bucket, as EC2 meters RunInstances and
	// TerminateInstances.
	Resources map[string]Bucket
	// InFlight bounds the requests this Gate has open at once; 8 when zero.
	InFlight int
	// Retry is the backoff of retried requests. Policy.MaxAttempts bounds
	// the attempts of a request the cloud failed (ErrUnavailable), 5 when
	// zero; throttled requests are retried until the context ends.
	Retry  retry.Policy
	Logger *slog.Logger
}

// Defaults of Options.
const (
	defaultInFlight    = 8
	defaultUnavailable = 5
	defaultRate        = 10
	defaultBurst       = 20
)

// Gate is one provider's way to its cloud's API. It is safe for
// concurrent use.
type Gate struct {
	opts  Options
	log   *slog.Logger
	slots chan struct{}

	mu        sync.Mutex
	requests  map[string]*rate.Limiter // by bucket name
	resources map[string]*rate.Limiter // by action
}

// New returns a Gate shaped by opts.
func New(opts Options) *Gate {
	if opts.InFlight <= 0 {
		opts.InFlight = defaultInFlight
	}
	if opts.Retry.MaxAttempts <= 0 {
		opts.Retry.MaxAttempts = defaultUnavailable
	}
	if _, ok := opts.Requests[""]; !ok {
		reqs := map[string]Bucket{"": {Rate: defaultRate, Burst: defaultBurst}}
		for k, v := range opts.Requests {
			reqs[k] = v
		}
		opts.Requests = reqs
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{
		opts: opts, log: log, slots: make(chan struct{}, opts.InFlight),
		requests: map[string]*rate.Limiter{}, resources: map[string]*rate.Limiter{},
	}
}

// Call describes one API request.
type Call struct {
	// Action is the cloud's name for the API method ("RunInstances",
	// "instances.bulkInsert", "servers.create"): it picks the buckets.
	Action string
	// Cost is the resource tokens the request takes (see
	// Options.Resources); zero takes none.
	Cost int
	// Idempotent says the request may be sent again after the cloud
	// failed it (ErrUnavailable): it only reads, or it carries an
	// idempotency token (EC2 ClientToken, GCE requestId).
	Idempotent bool
	// Poll says the caller polls: the request is sent once and its
	// failure returned, throttled or not, for the next poll to retry.
	Poll bool
}

// Do sends one request, f, through the gate: it waits for the request's
// tokens and an in-flight slot, runs f, and retries f's failure as the
// package comment says. f returns its cloud's error already classified
// (a *providers.Error or an error wrapping a providers kind). The error Do
// returns is f's last, or the context's with f's last inside.
func (g *Gate) Do(ctx context.Context, c Call, f func(ctx context.Context) error) error {
	unavailable := 0
	p := g.opts.Retry
	p.MaxAttempts = 0 // throttling is retried until ctx ends; see below
	charged := false
	return retry.Do(ctx, p, func(ctx context.Context) (bool, error) {
		// Resource tokens are charged once per request, not per attempt: a
		// cloud that refuses a request takes none of them.
		if err := g.wait(ctx, c, !charged); err != nil {
			return true, err
		}
		charged = true
		err := f(ctx)
		<-g.slots
		switch {
		case err == nil || c.Poll:
			return true, err
		case errors.Is(err, providers.ErrThrottled):
			g.log.DebugContext(ctx, "throttled; backing off", "cloud", g.opts.Cloud, "action", c.Action, "err", err)
			return false, err
		case errors.Is(err, providers.ErrUnavailable) && c.Idempotent:
			unavailable++
			if unavailable >= g.opts.Retry.MaxAttempts {
				return true, err
			}
			g.log.DebugContext(ctx, "cloud failed the request; sending it again", "cloud", g.opts.Cloud, "action", c.Action, "err", err)
			return false, err
		default:
			return true, err
		}
	})
}

// wait takes the request's tokens (and its resource tokens when
// resources is set) and an in-flight slot; the caller releases the slot.
func (g *Gate) wait(ctx context.Context, c Call, resources bool) error {
	if err := g.requestLimiter(c.Action).Wait(ctx); err != nil {
		return err
	}
	if l := g.resourceLimiter(c.Action); l != nil && c.Cost > 0 && resources {
		// A request larger than the bucket waits for a full bucket: the
		// cloud lets a full bucket's burst through at once.
		if err := l.WaitN(ctx, min(c.Cost, l.Burst())); err != nil {
			return err
		}
	}
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gate) requestLimiter(action string) *rate.Limiter {
	name := action
	if g.opts.Group != nil {
		name = g.opts.Group(action)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.requests[name]; ok {
		return l
	}
	b, ok := g.opts.Requests[name]
	if !ok {
		b = g.opts.Requests[""]
	}
	l := newLimiter(b)
	g.requests[name] = l
	return l
}

func (g *Gate) resourceLimiter(action string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.resources[action]; ok {
		return l
	}
	b, ok := g.opts.Resources[action]
	if !ok {
		return nil
	}
	l := newLimiter(b)
	g.resources[action] = l
	return l
}

func newLimiter(b Bucket) *rate.Limiter {
	if b.Rate <= 0 {
		return rate.NewLimiter(rate.Inf, max(b.Burst, 1))
	}
	return rate.NewLimiter(rate.Limit(b.Rate), max(b.Burst, 1))
}

// Transient reports whether err is a request the cloud refused or failed
// without an answer about the thing asked (throttled or unavailable): for
// a poll, "ask again at the next poll".
func Transient(err error) bool {
	return errors.Is(err, providers.ErrThrottled) || errors.Is(err, providers.ErrUnavailable)
}
