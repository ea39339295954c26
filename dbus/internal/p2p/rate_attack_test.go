package p2p

import (
	"math"
	"testing"
	"time"

	"github.com/contid/contid"
)

// The message rate's figures on a fake clock. Each row drives newRates
// with explicit figures: "now" is the shipped ones (100 a second, burst
// 1,000 per group; 2,000 for all users), "was" those before cb205c5
// (500, burst 500). Waits are what take returns, i.e. how long a
// connection's reader sleeps before it reads the message.

var (
	rateNow = [4]float64{100, 1000, 2000, 2000}
	rateWas = [4]float64{500, 500, 2000, 2000}
)

func newRatesOf(f [4]float64) *rates { return newRates(f[0], f[1], f[2], f[3]) }

// The shipped figures are the ones named "now" here.
func TestRateFiguresShipped(t *testing.T) {
	if got := [4]float64{messageRate, messageBurst, allMessageRate, allMessageBurst}; got != rateNow {
		t.Fatalf("shipped message rates %v, the rows below assume %v", got, rateNow)
	}
}

// pipeline takes n tokens for g at once (a client that writes n calls
// without waiting for replies) and returns the longest wait.
func pipeline(r *rates, g Group, n int, now time.Time) time.Duration {
	var worst time.Duration
	for i := 0; i < n; i++ {
		worst = max(worst, r.take(g, now))
	}
	return worst
}

// sequential plays a client that makes n calls one after another, each
// sent when the previous one is answered (contidctl list: ListContainers
// then one GetAll per container), with no time spent but the waits. It
// returns the time the calls took.
func sequential(r *rates, g Group, n int, start time.Time) time.Duration {
	now := start
	for i := 0; i < n; i++ {
		now = now.Add(r.take(g, now))
	}
	return now.Sub(start)
}

func near(got, want time.Duration) bool {
	return math.Abs(float64(got-want)) <= float64(20*time.Millisecond)+0.02*float64(want)
}

// One group of its own (no other load) making a burst and then keeping on:
// the burst is answered at once, then 100 a second.
func TestRateBurstThenRate(t *testing.T) {
	u := Group{UID: 1000}
	t0 := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name  string
		figs  [4]float64
		calls int
		want  time.Duration // the sequential client's time
	}{
		{"now: 1,000 calls at once", rateNow, 1000, 0},
		{"now: 1,100 calls: the last 100 at 100/s", rateNow, 1100, time.Second},
		{"was: 1,100 calls: 600 at 500/s", rateWas, 1100, 1200 * time.Millisecond},
		{"now: contidctl list of 998 containers (+Hello, +ListContainers)", rateNow, 1000, 0},
		{"now: contidctl list of 2,000 containers", rateNow, 2002, 10020 * time.Millisecond},
		{"was: contidctl list of 2,000 containers", rateWas, 2002, 3004 * time.Millisecond},
		// contidctl list reads every record, exited ones too (it filters
		// after GetAll), and [Registry] KeepExited is 10,000 by default.
		{"now: contidctl list with 10,000 records", rateNow, 10002, 90020 * time.Millisecond},
		{"was: contidctl list with 10,000 records", rateWas, 10002, 19004 * time.Millisecond},
	} {
		r := newRatesOf(tc.figs)
		if got := sequential(r, u, tc.calls, t0); !near(got, tc.want) {
			t.Errorf("%s: took %v, want %v", tc.name, got, tc.want)
		}
	}
}

// `watch contidctl list` (every 2 s) of N containers, over a minute: the
// longest run after the first. Runs are 2 s apart start to start, or
// back to back when a run takes longer.
func TestRateRepeatedList(t *testing.T) {
	u := Group{UID: 1000}
	t0 := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name       string
		figs       [4]float64
		containers int
		want       time.Duration // the longest run
	}{
		{"was: 300 containers every 2 s: never slowed", rateWas, 300, 0},
		{"now: 300 containers every 2 s: slowed to 100/s", rateNow, 300, 3020 * time.Millisecond},
		{"now: 150 containers every 2 s: within 100/s", rateNow, 150, 0},
	} {
		r := newRatesOf(tc.figs)
		now, worst := t0, time.Duration(0)
		for now.Sub(t0) < time.Minute {
			took := sequential(r, u, tc.containers+2, now)
			worst = max(worst, took)
			now = now.Add(max(took, 2*time.Second))
		}
		if !near(worst, tc.want) {
			t.Errorf("%s: longest run %v, want %v", tc.name, worst, tc.want)
		}
	}
}

// How much of all users' burst groups other than the victim's can take at
// once, and what that costs a third user who then pipelines 1,000 calls
// (within its own burst of 1,000). One local user has two groups: its
// own and that of connections whose connector is gone (contid.Invalid,
// which a user reaches by letting the connecting process exit before
// contidd accepts: see "user whose connector is gone" in
// TestAllowanceOfContainer, package dbus). Two users, or two tagged
// containers, are two groups as well.
func TestRateBurstsEmptyAllUsersBucket(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	self, gone, victim := Group{UID: 1000}, ContainerGroup(contid.Invalid), Group{UID: 2000}
	for _, tc := range []struct {
		name      string
		figs      [4]float64
		attackers []Group
		left      float64       // all users' tokens after the attackers' bursts
		wait      time.Duration // the victim's 1,000th call's wait (figures "now")
	}{
		{"control, now: one group's burst leaves half", rateNow, []Group{self}, 999, 0},
		{"now: one user (own + Invalid) takes all users' 2,000", rateNow, []Group{self, gone}, -2, 500 * time.Millisecond},
		{"now: two users take all of it", rateNow, []Group{self, {UID: 3000}}, -2, 500 * time.Millisecond},
		{"was: one user (own + Invalid) took half", rateWas, []Group{self, gone}, 998, -1},
		{"was: it took four groups (three users)", rateWas, []Group{self, gone, {UID: 3000}, {UID: 4000}}, -1, -1},
	} {
		r := newRatesOf(tc.figs)
		for _, g := range tc.attackers {
			// Each attacker takes its whole burst (and one more), as 32
			// pipelining connections do at once.
			for r.take(g, t0) == 0 {
			}
		}
		if math.Abs(r.all.tokens-tc.left) > 2 {
			t.Errorf("%s: all users' bucket at %.0f, want %.0f", tc.name, r.all.tokens, tc.left)
		}
		if tc.wait < 0 {
			continue
		}
		if worst := pipeline(r, victim, 1000, t0); !near(worst, tc.wait) {
			t.Errorf("%s: the victim's 1,000th call waits %v, want %v", tc.name, worst, tc.wait)
		}
	}
}

// However many takes, a group's debt stays what its connections owe: each
// reader takes one token and sleeps until it is due before taking the
// next, so 32 connections drive a group at most 32 below 0 and all users
// at most 1,024 below 0 (a wait of 0.32 s and 0.51 s). Root is never
// charged. Here: 32 readers of one group and 1,024 of 32 groups, each
// taking again only once its previous wait is over, for 30 s.
func TestRateDebtBounded(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name           string
		groups, conns  int
		wantGroupFloor float64
	}{
		{"one group, 32 connections", 1, 32, -32},
		{"32 groups, 32 connections each", 32, 32, -32},
	} {
		r := newRatesOf(rateNow)
		type reader struct {
			g    Group
			next time.Time
		}
		var rs []reader
		for g := 0; g < tc.groups; g++ {
			for c := 0; c < tc.conns; c++ {
				rs = append(rs, reader{Group{UID: uint32(1000 + g)}, t0})
			}
		}
		minGroup, minAll := 0.0, 0.0
		for step := t0; step.Sub(t0) < 30*time.Second; step = step.Add(time.Millisecond) {
			for i := range rs {
				if rs[i].next.After(step) {
					continue
				}
				rs[i].next = step.Add(r.take(rs[i].g, step))
			}
			for _, b := range r.buckets {
				minGroup = min(minGroup, b.tokens)
			}
			minAll = min(minAll, r.all.tokens)
		}
		t.Logf("%s: group floor %.1f, all users' floor %.1f", tc.name, minGroup, minAll)
		if minGroup < tc.wantGroupFloor-1 || minAll < -float64(len(rs))-1 {
			t.Errorf("%s: group fell to %.1f, all users to %.1f", tc.name, minGroup, minAll)
		}
		if r.take(Group{}, t0.Add(30*time.Second)) != 0 {
			t.Errorf("%s: root waits", tc.name)
		}
	}
}

// Reconnecting, or the summary's prune, does not give a group its burst
// back: the bucket is the group's, not the connection's, and prune forgets
// only full buckets.
func TestRatePruneKeepsDebt(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	u := Group{UID: 1000}
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  time.Duration // the wait of the next call after prune
	}{
		{"pruned at once: still in debt", 0, 10 * time.Millisecond},
		{"pruned after 5 s: half refilled, no wait", 5 * time.Second, 0},
		{"pruned after 10 s: full, forgotten, a new burst", 10 * time.Second, 0},
	} {
		r := newRatesOf(rateNow)
		for r.take(u, t0) == 0 {
		}
		// The group is at -1: each further take waits 10 ms more.
		now := t0.Add(tc.after)
		r.prune(now)
		if got := r.take(u, now); !near(got, tc.want) {
			t.Errorf("%s: waits %v, want %v", tc.name, got, tc.want)
		}
	}
}
