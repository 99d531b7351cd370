package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/provisionhq/provision/internal/retry"
)

// Plain list-and-watch rather than a SharedInformerFactory: an informer
// caches every pod and node object in full, when all this needs is one bit
// per object to tell a change that matters from one that does not; and the
// loop reads its Snapshot fresh anyway. (client-go's tools/cache also pulls
// in a module, github.com/pmezard/go-difflib, that go.sum does not list.)

// minWatchLife is how long a watch must last to count as healthy. One that
// ends sooner (a proxy dropping it, an error event at once) is followed by a
// pause, so a broken path never turns into a tight list/watch loop against
// the API server.
const minWatchLife = 10 * time.Second

// Watch calls changed when a pod becomes Unschedulable, a pod is deleted or
// finishes, or a node is added, removed, or becomes ready, not ready,
// cordoned or uncordoned. It follows pods and nodes with one list-and-watch
// each, resuming from the last resource version when a watch ends and
// listing again (calling changed if anything that matters differs) when the
// server no longer has that version. It returns ctx.Err() once ctx is done and
// both followers have stopped.
//
// changed is never called concurrently with itself.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	var mu sync.Mutex
	notify := func() {
		mu.Lock()
		defer mu.Unlock()
		changed()
	}
	var wg sync.WaitGroup
	for _, f := range []feed{&podFeed{s: s}, &nodeFeed{s: s}} {
		wg.Go(func() { s.follow(ctx, f, notify) })
	}
	wg.Wait()
	return ctx.Err()
}

// feed is one kind of object Watch follows. It remembers, per object, only
// what decides whether a change matters.
type feed interface {
	kind() string
	// resync lists every object, replaces what the feed remembers, and
	// reports whether a change that matters happened since the last list
	// (never on the first).
	resync(ctx context.Context) (resourceVersion string, changed bool, err error)
	watch(ctx context.Context, resourceVersion string) (watch.Interface, error)
	// apply folds one event into memory and reports whether it matters.
	apply(t watch.EventType, obj runtime.Object) bool
}

// follow keeps one feed's watch running until ctx is done.
func (s *Source) follow(ctx context.Context, f feed, changed func()) {
	log := s.log.With("watch", f.kind())
	policy := retry.Policy{Initial: s.backoff, Max: 10 * s.backoff}
	rv := ""
	for {
		var w watch.Interface
		err := retry.Do(ctx, policy, func(ctx context.Context) (bool, error) {
			if rv == "" {
				var diff bool
				var err error
				if rv, diff, err = f.resync(ctx); err != nil {
					log.Warn("kubernetes list failed; retrying", "err", err)
					return false, err
				}
				if diff {
					changed()
				}
			}
			var err error
			if w, err = f.watch(ctx, rv); err != nil {
				// The version may be too old; list again next time.
				rv = ""
				log.Warn("kubernetes watch failed; retrying", "err", err)
				return false, fmt.Errorf("watch %s: %w", f.kind(), err)
			}
			return true, nil
		})
		if err != nil {
			return // retry.Do gives up only when ctx is done
		}
		start := time.Now()
		rv = consume(ctx, log, f, w, changed, rv)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) < minWatchLife && !sleep(ctx, s.backoff) {
			return
		}
	}
}

// consume reads w until it ends and returns the resource version to resume
// from, or "" when the feed must list again.
func consume(ctx context.Context, log *slog.Logger, f feed, w watch.Interface, changed func(), rv string) string {
	for {
		select {
		case <-ctx.Done():
			return rv
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv // the server's watch timeout: resume where it stopped
			}
			switch ev.Type {
			case watch.Error:
				// Mostly 410 Gone: rv is older than the server keeps.
				log.Debug("kubernetes watch ended; listing again", "err", apierrors.FromObject(ev.Object))
				return ""
			case watch.Bookmark:
			default:
				if f.apply(ev.Type, ev.Object) {
					changed()
				}
			}
			if m, err := meta.Accessor(ev.Object); err == nil && m.GetResourceVersion() != "" {
				rv = m.GetResourceVersion()
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// podFeed remembers, per unfinished pod, whether it is unschedulable.
type podFeed struct {
	s     *Source
	known map[string]bool // nil before the first list
}

func (f *podFeed) kind() string { return "pods" }

func (f *podFeed) resync(ctx context.Context) (string, bool, error) {
	pods, rv, err := f.s.listPods(ctx, metav1.ListOptions{FieldSelector: unfinished})
	if err != nil {
		return "", false, err
	}
	now := make(map[string]bool, len(pods))
	for i := range pods {
		if p := &pods[i]; !finished(p) {
			now[podKey(p)] = unschedulable(p)
		}
	}
	changed := false
	if f.known != nil {
		for k, u := range now {
			changed = changed || u && !f.known[k]
		}
		for k := range f.known {
			_, ok := now[k]
			changed = changed || !ok
		}
	}
	f.known = now
	return rv, changed, nil
}

func (f *podFeed) watch(ctx context.Context, rv string) (watch.Interface, error) {
	return f.s.client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{
		FieldSelector:       unfinished,
		ResourceVersion:     rv,
		AllowWatchBookmarks: true,
	})
}

func (f *podFeed) apply(t watch.EventType, obj runtime.Object) bool {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	k := podKey(p)
	_, was := f.known[k]
	// With the unfinished field selector, a pod that finishes arrives as
	// Deleted; without it (old servers, the fake client) as Modified.
	if t == watch.Deleted || finished(p) {
		delete(f.known, k)
		return t == watch.Deleted || was
	}
	u := unschedulable(p)
	before := f.known[k]
	f.known[k] = u
	return u && !before
}

// nodeFeed remembers, per node, whether it takes work (ready, not cordoned).
type nodeFeed struct {
	s     *Source
	known map[string]bool // nil before the first list
}

func (f *nodeFeed) kind() string { return "nodes" }

func (f *nodeFeed) resync(ctx context.Context) (string, bool, error) {
	nodes, rv, err := f.s.listNodes(ctx)
	if err != nil {
		return "", false, err
	}
	now := make(map[string]bool, len(nodes))
	for i := range nodes {
		now[nodes[i].Name] = usable(&nodes[i])
	}
	changed := false
	if f.known != nil {
		changed = len(now) != len(f.known)
		for k, u := range now {
			before, ok := f.known[k]
			changed = changed || !ok || before != u
		}
	}
	f.known = now
	return rv, changed, nil
}

func (f *nodeFeed) watch(ctx context.Context, rv string) (watch.Interface, error) {
	return f.s.client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{
		ResourceVersion:     rv,
		AllowWatchBookmarks: true,
	})
}

func (f *nodeFeed) apply(t watch.EventType, obj runtime.Object) bool {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return false
	}
	if t == watch.Deleted {
		delete(f.known, n.Name)
		return true
	}
	u := usable(n)
	before, ok := f.known[n.Name]
	f.known[n.Name] = u
	return !ok || before != u
}
