package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/internal/retry"
)

const (
	// healthyStream is how long an event stream must have stayed open (or
	// it delivered an event) for its end to count as a drop rather than a
	// failed attempt: a drop reconnects at once, failed attempts back off.
	healthyStream = 10 * time.Second
	// maxReconnectDelay caps the event stream's reconnect backoff.
	maxReconnectDelay = 5 * time.Second
)

// Watch calls changed when demand may have changed, until ctx ends; it
// returns ctx.Err(). Two things feed it:
//
//   - the event stream (the client's Events, types service and node): a service
//     created, scaled or removed, a node joining, leaving, going down or
//     being drained calls changed at once. Container events are not asked
//     for: the engine reports only its own node's, and the autoscaler runs
//     on a manager that is usually drained of work. The stream is reopened
//     when it drops, with backoff while the engine is unreachable;
//   - a poll of tasks and nodes every PollInterval, because Swarm emits no
//     task events: changed is called when the set of pending task IDs or of
//     usable nodes differs from the previous poll's. It also covers events
//     missed while the stream was down.
//
// Errors are logged (a failing poll once, until it recovers), never
// returned: the loop still has its periodic scan. changed must not block;
// it may be called from two goroutines.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.followEvents(wctx, changed) })
	s.pollDemand(wctx, changed)
	cancel()
	wg.Wait()
	return ctx.Err()
}

func (s *Source) followEvents(ctx context.Context, changed func()) {
	policy := retry.Policy{Initial: 250 * time.Millisecond, Max: maxReconnectDelay}
	for {
		err := retry.Do(ctx, policy, func(ctx context.Context) (bool, error) {
			healthy, err := s.readEvents(ctx, changed)
			if !healthy && ctx.Err() == nil {
				s.logger.Debug("swarm event stream unavailable; retrying", "err", err)
			}
			// A healthy stream that ended leaves Do, so the next connect
			// is immediate and its backoff starts afresh.
			return healthy, err
		})
		if ctx.Err() != nil {
			return
		}
		s.logger.Warn("swarm event stream ended; reconnecting", "err", err)
	}
}

// readEvents follows one event stream until it ends; healthy reports a
// stream that delivered events or stayed open a while.
func (s *Source) readEvents(ctx context.Context, changed func()) (healthy bool, err error) {
	if err := s.api.ready(ctx); err != nil {
		return false, fmt.Errorf("swarm events: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's reader
	start := time.Now()
	stream := s.api.api.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "service", "node")})
	for {
		select {
		case ev := <-stream.Messages:
			healthy = true
			s.logger.Debug("swarm event", "type", ev.Type, "action", ev.Action, "id", ev.Actor.ID, "name", ev.Actor.Attributes["name"])
			changed()
		case err := <-stream.Err:
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by the engine")
			}
			return healthy || time.Since(start) >= healthyStream, fmt.Errorf("swarm events: %w", s.api.explain(err))
		}
	}
}

// pollDemand lists tasks and nodes every poll interval and calls changed
// when the pending tasks or usable nodes differ from the last poll's. The
// first poll is the baseline: the loop reads its own Snapshot when it starts.
func (s *Source) pollDemand(ctx context.Context, changed func()) {
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	var (
		last            string
		seen, failing   bool
		firstFailure    time.Time
		consecutiveFail int
	)
	for {
		sig, err := s.demand(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			consecutiveFail++
			if !failing {
				failing, firstFailure = true, time.Now()
				s.logger.Warn("swarm poll failing; retrying every interval", "interval", s.poll, "err", err)
			}
		default:
			if failing {
				s.logger.Info("swarm poll recovered", "failed_polls", consecutiveFail, "after", time.Since(firstFailure).Round(time.Second))
				failing, consecutiveFail = false, 0
			}
			if seen && sig != last {
				changed()
			}
			last, seen = sig, true
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// demand is a fingerprint of what Watch reacts to: the IDs of pending tasks
// and of usable nodes, sorted.
func (s *Source) demand(ctx context.Context) (string, error) {
	tasks, err := s.listTasks(ctx, client.Filters{}.Add("desired-state", "running"))
	if err != nil {
		return "", err
	}
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return "", err
	}
	var waiting, ready []string
	for i := range tasks {
		if pending(&tasks[i]) {
			waiting = append(waiting, tasks[i].ID)
		}
	}
	for i := range nodes {
		if usable(&nodes[i]) {
			ready = append(ready, nodes[i].ID)
		}
	}
	slices.Sort(waiting)
	slices.Sort(ready)
	return strings.Join(waiting, ",") + "|" + strings.Join(ready, ","), nil
}
