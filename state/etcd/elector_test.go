package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state/etcd"
)

// handover bounds a handover that needs no lease to expire: resign, or a
// leader's ctx ending.
const handover = time.Second

// won is what a Campaign in a goroutine returns.
type won struct {
	lead   context.Context
	resign func()
	err    error
}

// campaign runs Campaign in a goroutine; the result arrives on the channel.
func campaign(ctx context.Context, e *etcd.Elector, identity string) <-chan won {
	ch := make(chan won, 1)
	go func() {
		lead, resign, err := e.Campaign(ctx, identity)
		ch <- won{lead, resign, err}
	}()
	return ch
}

// lead campaigns and fails t unless it leads within a few seconds.
func lead(t *testing.T, e *etcd.Elector, identity string) won {
	t.Helper()
	w, _ := within(t, campaign(t.Context(), e, identity), 10*time.Second, identity+" campaign")
	if w.err != nil {
		t.Fatalf("%s: Campaign: %v", identity, w.err)
	}
	t.Cleanup(w.resign)
	return w
}

func elector(t *testing.T, e *env) *etcd.Elector {
	return etcd.NewElector(e.backend(t), testTTL)
}

func isLeader(t *testing.T, e *etcd.Elector) bool {
	t.Helper()
	ok, err := e.IsLeader(t.Context())
	if err != nil {
		t.Fatalf("IsLeader: %v", err)
	}
	return ok
}

func wantLeader(t *testing.T, e *etcd.Elector, want string) {
	t.Helper()
	if got, err := e.Leader(t.Context()); err != nil || got != want {
		t.Errorf("Leader: %q, %v; want %q", got, err, want)
	}
}

// pending fails t if ch delivers within a moment: that candidate must still
// be waiting.
func pending(t *testing.T, ch <-chan won, who string) {
	t.Helper()
	select {
	case w := <-ch:
		t.Fatalf("%s's Campaign returned (err %v) while another leads", who, w.err)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestElection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		test func(t *testing.T, e *env)
	}{
		{"OneOfTwoLeadsAndResignHandsOver", testOneLeads},
		{"KilledLeaderReplacedWithinTTL", testKilledLeader},
		{"CloseHandsOver", testCloseHandsOver},
		{"DeposedLeaderIsFenced", testDeposed},
		{"CancelledContextHandsOver", testCancelledCampaign},
		{"CampaignGivesUpWithContext", testCampaignTimeout},
		{"NoLeader", testNoLeader},
		{"OneCampaignPerElector", testOneCampaignPerElector},
	}
	eachMode(t, func(t *testing.T, m mode) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				tt.test(t, newEnv(t, m))
			})
		}
	})
}

// testOneLeads: of two candidates exactly one leads; its resign hands
// over to the other at once, not after a TTL.
func testOneLeads(t *testing.T, e *env) {
	a, b := elector(t, e), elector(t, e)
	ca, cb := campaign(t.Context(), a, "a"), campaign(t.Context(), b, "b")
	var first won
	var firstE, secondE *etcd.Elector
	var second <-chan won
	var winner, loser string
	select {
	case first = <-ca:
		firstE, secondE, second, winner, loser = a, b, cb, "a", "b"
	case first = <-cb:
		firstE, secondE, second, winner, loser = b, a, ca, "b", "a"
	case <-time.After(10 * time.Second):
		t.Fatal("nobody leads after 10s")
	}
	if first.err != nil {
		t.Fatalf("%s: Campaign: %v", winner, first.err)
	}
	t.Cleanup(first.resign)
	pending(t, second, loser)
	if !isLeader(t, firstE) || isLeader(t, secondE) {
		t.Errorf("IsLeader: %s %v, %s %v; want only %s", winner, isLeader(t, firstE), loser, isLeader(t, secondE), winner)
	}
	wantLeader(t, secondE, winner)

	first.resign()
	w, took := within(t, second, handover, loser+" leads after "+winner+" resigned")
	if w.err != nil {
		t.Fatalf("%s: Campaign: %v", loser, w.err)
	}
	t.Cleanup(w.resign)
	t.Logf("resign handed over in %v", took.Round(time.Millisecond))
	if first.lead.Err() == nil {
		t.Error("the resigned leader's context is still live")
	}
	if isLeader(t, firstE) || !isLeader(t, secondE) {
		t.Errorf("after resign IsLeader: %s %v, %s %v", winner, isLeader(t, firstE), loser, isLeader(t, secondE))
	}
	wantLeader(t, firstE, loser)
	first.resign() // twice is harmless
}

// testKilledLeader: a leader process killed without resigning is replaced
// within its lease TTL.
func testKilledLeader(t *testing.T, e *env) {
	helper := startHelper(t, e, "lead")
	me := elector(t, e)
	wantLeader(t, me, "helper")
	ch := campaign(t.Context(), me, "me")
	pending(t, ch, "me")

	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	w, took := within(t, ch, testTTL+margin, "a new leader after the leader was killed")
	if w.err != nil {
		t.Fatalf("Campaign: %v", w.err)
	}
	t.Cleanup(w.resign)
	t.Logf("killed leader replaced in %v (TTL %v)", took.Round(time.Millisecond), testTTL)
	if !isLeader(t, me) {
		t.Error("IsLeader is false for the new leader")
	}
	wantLeader(t, me, "me")
}

// testCloseHandsOver: closing the leader's backend, as a clean shutdown
// does, resigns: the other candidate leads at once, not after a TTL.
func testCloseHandsOver(t *testing.T, e *env) {
	ab := e.backend(t)
	a, b := etcd.NewElector(ab, testTTL), elector(t, e)
	wa := lead(t, a, "a")
	cb := campaign(t.Context(), b, "b")
	pending(t, cb, "b")

	start := time.Now()
	if err := ab.Close(); err != nil {
		t.Fatal(err)
	}
	if wa.lead.Err() == nil {
		t.Error("a's lead context is live after Close")
	}
	w, _ := within(t, cb, handover, "b leads after a's backend closed")
	if w.err != nil {
		t.Fatalf("b: Campaign: %v", w.err)
	}
	t.Cleanup(w.resign)
	t.Logf("Close handed over in %v", time.Since(start).Round(time.Millisecond))
}

// testDeposed: a leader whose lease is gone (revoked here, as etcd does on
// expiry while the leader is paused) gets false from IsLeader before it
// notices anything, and its lead context ends soon after.
func testDeposed(t *testing.T, e *env) {
	a := elector(t, e)
	w := lead(t, a, "a")
	resp, err := e.raw.Get(t.Context(), e.key("leader/"), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("leader keys: %v, %v", resp, err)
	}
	if _, err := e.raw.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if isLeader(t, a) {
		t.Error("IsLeader is true for a leader whose lease is gone")
	}
	within(t, w.lead.Done(), testTTL, "the deposed leader's context ends")
	if _, err := a.Leader(t.Context()); !errors.Is(err, etcd.ErrNoLeader) {
		t.Errorf("Leader after the only leader was deposed: %v, want ErrNoLeader", err)
	}
}

// testCancelledCampaign: ending the ctx given to Campaign ends the
// leadership and hands over at once.
func testCancelledCampaign(t *testing.T, e *env) {
	a, b := elector(t, e), elector(t, e)
	ctx, cancel := context.WithCancel(t.Context())
	wa, _ := within(t, campaign(ctx, a, "a"), 10*time.Second, "a leads")
	if wa.err != nil {
		t.Fatal(wa.err)
	}
	cb := campaign(t.Context(), b, "b")
	pending(t, cb, "b")
	cancel()
	within(t, wa.lead.Done(), handover, "a's lead context ends with its ctx")
	w, took := within(t, cb, handover, "b leads after a's ctx ended")
	if w.err != nil {
		t.Fatal(w.err)
	}
	t.Cleanup(w.resign)
	t.Logf("cancelled leader handed over in %v", took.Round(time.Millisecond))
}

// testCampaignTimeout: a candidate's Campaign ends with its ctx and leaves
// no key behind to lead later by surprise.
func testCampaignTimeout(t *testing.T, e *env) {
	a, b := elector(t, e), elector(t, e)
	lead(t, a, "a")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := b.Campaign(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign past its deadline: %v, want DeadlineExceeded", err)
	}
	resp, err := e.raw.Get(t.Context(), e.key("leader/"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Errorf("candidate keys after b gave up: %v, %v; want only a's", resp, err)
	}
	// b can campaign again.
	cb := campaign(t.Context(), b, "b")
	pending(t, cb, "b")
}

func testNoLeader(t *testing.T, e *env) {
	a := elector(t, e)
	if _, err := a.Leader(t.Context()); !errors.Is(err, etcd.ErrNoLeader) {
		t.Errorf("Leader with no candidate: %v, want ErrNoLeader", err)
	}
	if isLeader(t, a) {
		t.Error("IsLeader before any Campaign")
	}
}

func testOneCampaignPerElector(t *testing.T, e *env) {
	a := elector(t, e)
	lead(t, a, "a")
	if _, _, err := a.Campaign(t.Context(), "a"); !errors.Is(err, etcd.ErrCampaigning) {
		t.Errorf("second Campaign on one Elector: %v, want ErrCampaigning", err)
	}
}
