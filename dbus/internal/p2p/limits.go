package p2p

import (
	"sync"
	"time"

	"github.com/contid/contid"
)

// Limits that keep one misbehaving peer, or a thousand, from exhausting
// contidd. The figures behind them, and behind the unit's LimitNOFILE= and
// MemoryMax=, are in docs/DESIGN.md ("The peer-to-peer server").
const (
	// Connections. Root has an allowance of its own, so users cannot lock
	// out the orchestrators; everyone else shares maxP2PConns, in
	// allowances per user (see Group).
	maxP2PConns      = 1024
	maxConnsPerGroup = 32
	maxRootConns     = 128

	// Calls and messages.
	maxCallsPerConn = 32
	// messageTimeout: once its first byte is in, a message must arrive
	// whole within this, or the connection is closed. An idle connection
	// (between messages) may wait as long as it likes.
	messageTimeout = 10 * time.Second
	// maxFDsPerMessage: no method takes more than one descriptor. The
	// receive buffer has room for this many; a message that brings more
	// is a protocol error.
	maxFDsPerMessage = 4
	// maxFDCalls: calls holding descriptors at once, per connection.
	maxFDCalls = 4

	// Outgoing. A peer whose writes have been stuck for writeStall with
	// stalledQueue messages waiting has stopped reading and is
	// disconnected: it would only make contidd hold more for it. A peer
	// that reads may have up to maxQueuedMessages waiting while its
	// writes go on: 200 concurrent TagCgroup calls queue about 250
	// replies and ContainerNew signals to each client before the first
	// write returns, and a plain bound of 128 cut clients that were
	// reading. The bytes, not the count, bound memory.
	stalledQueue      = 128
	writeStall        = time.Second
	maxQueuedMessages = 4096
	maxQueuedBytes    = 1 << 20
	writeTimeout      = 5 * time.Second

	// Bytes held for peers other than root in queued outgoing messages
	// until written. The first replyReserve bytes a connection has queued
	// are its own and draw on no budget, so however many users fill the
	// budgets, everyone is still answered; only a reply larger than that
	// (ListContainers of many containers) needs room in them, and without
	// it the call fails (LimitExceeded) instead of the connection.
	groupByteBudget = 16 << 20
	totalByteBudget = 48 << 20
	replyReserve    = 64 << 10

	maxAuthLine  = 1024
	maxAuthLines = 32
	authTimeout  = 30 * time.Second

	// Rates for users other than root, per user and for all of them
	// together. Connections beyond them are turned away at accept;
	// messages beyond them wait (the peer's writes block). So however
	// many connections users cycle through, contidd spends a bounded
	// share of its time on them, and root's calls find it free. A
	// user's 100 messages a second bound what its pipelined calls cost:
	// at 500, 1,000 hostile clients of one user added 0.12 to 0.16 CPUs
	// to contidd and raised a root client's TagCgroup p99 up to 2.1 times
	// its idle figure; at 100, 0.07 to 0.09 CPUs and 1.36 to 1.73 times
	// (make bench, phase stall; docs/DESIGN.md has the runs). The burst
	// of 1,000 lets a tool make its calls at once (contidctl list asks
	// once per record), and a user who keeps calling gets 100 a second.
	connectRate, connectBurst       = 16, 32     // per user, per second
	allConnectRate, allConnectBurst = 200, 400   // all users
	messageRate, messageBurst       = 100, 1000  // per user
	allMessageRate, allMessageBurst = 2000, 2000 // all users
)

// Group is whose allowance a connection draws on: a user, root's
// subordinate UIDs as one user of their own, or a container. The
// dispatcher decides it (Dispatcher.Allowance); the server holds each
// group to its limits.
type Group struct {
	UID uint32
	// RootSub: a UID in one of root's subordinate ranges (rootful
	// containers with their own user namespace). They share an allowance,
	// and never root's.
	RootSub bool
	// Block: the UIDs of UID's 65,536-block that no /etc/subuid range
	// names, as one user.
	Block bool
	// Container: any process inside a tagged container, whatever its
	// UID, by the outermost container. It is a user like any other for the limits, so it cannot use
	// up the allowance of the orchestrators outside every container, nor
	// take many by switching UIDs.
	Container contid.ID
}

// IsRoot tells root's group, which has an allowance of its own and is
// held to no rate or byte budget.
func (g Group) IsRoot() bool { return g.UID == 0 && !g.RootSub && g.Container == contid.Unset }

// ContainerGroup is the group of every connection from container id.
func ContainerGroup(id contid.ID) Group { return Group{Container: id} }

// byteBudget bounds the bytes held for peers other than root, in all and
// per group, so that neither one user nor a few can make contidd hold
// more than totalByteBudget for them.
type byteBudget struct {
	mu      sync.Mutex
	total   int64
	byGroup map[Group]int64
}

// take reserves n bytes for g; false when that would pass a bound. Root's
// bytes are not counted.
func (b *byteBudget) take(g Group, n int) bool {
	if g.IsRoot() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byGroup == nil {
		b.byGroup = map[Group]int64{}
	}
	if b.total+int64(n) > totalByteBudget || b.byGroup[g]+int64(n) > groupByteBudget {
		return false
	}
	b.total += int64(n)
	b.byGroup[g] += int64(n)
	return true
}

func (b *byteBudget) give(g Group, n int) {
	if g.IsRoot() || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= int64(n)
	if b.byGroup[g] -= int64(n); b.byGroup[g] <= 0 {
		delete(b.byGroup, g)
	}
}

// rates are token buckets for users other than root: one per group, and
// one for all of them together.
type rates struct {
	rate, burst       float64 // per group
	allRate, allBurst float64

	mu      sync.Mutex
	buckets map[Group]*bucket
	all     bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRates(rate, burst, allRate, allBurst float64) *rates {
	return &rates{rate: rate, burst: burst, allRate: allRate, allBurst: allBurst,
		buckets: map[Group]*bucket{}, all: bucket{tokens: allBurst}}
}

// refill adds what rate earned since the bucket was last used.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if !b.last.IsZero() {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
}

// take takes a token for g (and one of all users') and returns how long
// to wait before using it: 0 when both were there.
func (r *rates) take(g Group, now time.Time) time.Duration {
	if g.IsRoot() {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.group(g, now)
	b.tokens--
	r.all.tokens--
	wait := max(-b.tokens/r.rate, -r.all.tokens/r.allRate, 0)
	return time.Duration(wait * float64(time.Second))
}

// allow takes the tokens only if both are there.
func (r *rates) allow(g Group, now time.Time) bool {
	if g.IsRoot() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.group(g, now)
	if b.tokens < 1 || r.all.tokens < 1 {
		return false
	}
	b.tokens--
	r.all.tokens--
	return true
}

func (r *rates) group(g Group, now time.Time) *bucket {
	r.all.refill(now, r.allRate, r.allBurst)
	b := r.buckets[g]
	if b == nil {
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[g] = b
	}
	b.refill(now, r.rate, r.burst)
	return b
}

// prune forgets the groups whose buckets have filled up again: they are
// as good as new, and the map stays as small as the set of busy users.
func (r *rates) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for g, b := range r.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*r.rate >= r.burst {
			delete(r.buckets, g)
		}
	}
}
