package dbus

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

// Limits that keep one misbehaving peer, or a thousand, from exhausting
// contidd. The figures behind them, and behind the unit's LimitNOFILE= and
// MemoryMax=, are in docs/DESIGN.md ("The peer-to-peer server").
const (
	// Connections. Root has an allowance of its own, so users cannot lock
	// out the orchestrators; everyone else shares maxP2PConns, in
	// allowances per user (see uidGroup).
	maxP2PConns      = 1024
	maxConnsPerGroup = 32
	maxRootConns     = 128

	// Calls and messages.
	maxCallsPerConn = 32
	// maxMessageSize: every call contidd serves fits in far less, and a
	// message is refused from its fixed header, before it is read or
	// decoded. The bound holds for root too: decoding multiplies a body's
	// size (16 MiB of variants became 300 MiB of Go values), so what a
	// client may send, not only what it may hold, must be small. A larger
	// message is read into a small scratch buffer and dropped.
	maxMessageSize = 64 << 10
	// protocolMaxMessage is the D-Bus specification's bound. A message
	// between the two is skipped unread and answered with an error.
	protocolMaxMessage = 128 << 20
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
	// share of its time on them, and root's calls find it free.
	connectRate, connectBurst       = 16, 32     // per user, per second
	allConnectRate, allConnectBurst = 200, 400   // all users
	messageRate, messageBurst       = 500, 500   // per user
	allMessageRate, allMessageBurst = 2000, 2000 // all users
)

// groupKey is whose allowance a connection draws on: a user, root's
// subordinate UIDs as one user of their own, or a container.
type groupKey struct {
	uid uint32
	// rootSub: a UID in one of root's subordinate ranges (rootful
	// containers with their own user namespace). They share an allowance,
	// and never root's.
	rootSub bool
	// block: the UIDs of uid's 65,536-block that no /etc/subuid range
	// names, as one user.
	block bool
	// container: any process inside a tagged container, whatever its
	// UID, by the outermost container. It is a user like any other for the limits, so it cannot use
	// up the allowance of the orchestrators outside every container, nor
	// take many by switching UIDs.
	container contid.ID
}

func (g groupKey) isRoot() bool { return g.uid == 0 && !g.rootSub && g.container == contid.Unset }

// containerGroup is the group of every connection from container id.
func containerGroup(id contid.ID) groupKey { return groupKey{container: id} }

// groupOf is the allowance a new connection draws on. A connection from a
// process in a container draws on its outermost container's, whatever its
// UID and however deep it is nested: root
// in a container can switch among as many UIDs as it likes, and would
// otherwise take one allowance per UID. UID 0 counts as root only when its
// connecting process is alive and in no container. The container is read
// at accept, from a pidfd of the connecting PID. A connector that is gone
// or unreadable by then draws on an allowance of its own
// (contid.Invalid), so a container cannot pass its connections off as
// root's or a user's by letting the connector exit. The PID is not pinned
// by the time the tag is read; a reused PID can only make contidd charge
// another allowance, never grant anything: authorization reads the
// process pinned for the connection.
func (s *p2pServer) groupOf(uid, pid uint32) groupKey {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return containerGroup(contid.Invalid)
	}
	defer unix.Close(fd)
	id, err := s.m.cfg.Tracker.ProcessID(fd)
	switch {
	case errors.Is(err, kernel.ErrNotTagged), err == nil && id == contid.Unset:
		if uid != 0 {
			return s.groups.group(uid)
		}
		return groupKey{}
	case err != nil:
		return containerGroup(contid.Invalid)
	}
	// The outermost container's: a nested orchestrator could otherwise
	// tag a child cgroup per 32 connections and take every connection
	// users may hold. A container contidd has no record of yet (an
	// autotag it has not adopted) shares one allowance with every other
	// such, so those cannot multiply allowances either.
	c, err := s.m.cfg.Registry.Get(id)
	if err != nil || len(c.Chain) == 0 {
		return containerGroup(contid.Invalid)
	}
	return containerGroup(c.Chain[len(c.Chain)-1])
}

// subUIDs groups the UIDs of /etc/subuid with the user they belong to. A
// rootless user's containers run as that user's subordinate UIDs, so
// without this a user with a range of 65,536 UIDs would get 65,536
// allowances. UIDs in no range are their own group. Only the file is read
// (as shadow-utils' newuidmap does by default); ranges handed out by an
// NSS subid module are not seen.
type subUIDs struct {
	path string

	mu      sync.Mutex
	checked time.Time // the file is looked at once a second at most
	mtime   time.Time
	size    int64
	ranges  []subUIDRange
}

type subUIDRange struct {
	first, count uint64
	owner        groupKey
}

func newSubUIDs(path string) *subUIDs { return &subUIDs{path: path} }

// group returns the allowance uid draws on. The file is read again when it
// changes; while it cannot be read, every UID is its own group.
func (s *subUIDs) group(uid uint32) groupKey {
	if uid == 0 {
		return groupKey{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	for _, r := range s.ranges {
		if uint64(uid) >= r.first && uint64(uid)-r.first < r.count {
			return r.owner
		}
	}
	// UIDs above 65535 that no range names belong to user namespaces set
	// up without /etc/subuid, such as systemd-nspawn --private-users=pick,
	// which hands each container a block of 65,536 aligned to 65,536. The
	// block is one user, or one container would have 65,536 allowances.
	if uid > 0xffff {
		return groupKey{uid: uid &^ 0xffff, block: true}
	}
	return groupKey{uid: uid}
}

func (s *subUIDs) refresh() {
	now := time.Now()
	if now.Sub(s.checked) < time.Second {
		return
	}
	s.checked = now
	fi, err := os.Stat(s.path)
	if err != nil {
		s.ranges, s.mtime, s.size = nil, time.Time{}, 0
		return
	}
	if fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return
	}
	s.ranges, s.mtime, s.size = parseSubUIDs(b, lookupUID), fi.ModTime(), fi.Size()
}

// parseSubUIDs reads "owner:first:count" lines; owner is a user name or a
// UID. An owner that cannot be resolved still groups its range, under the
// range's first UID.
func parseSubUIDs(b []byte, lookup func(name string) (uint32, bool)) []subUIDRange {
	var out []subUIDRange
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		first, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		var owner uint32
		if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
			owner = uint32(n)
		} else if u, ok := lookup(f[0]); ok {
			owner = u
		} else {
			owner = uint32(first)
		}
		out = append(out, subUIDRange{first: first, count: count, owner: groupKey{uid: owner, rootSub: owner == 0}})
	}
	return out
}

func lookupUID(name string) (uint32, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err == nil
}

// byteBudget bounds the bytes held for peers other than root, in all and
// per group, so that neither one user nor a few can make contidd hold
// more than totalByteBudget for them.
type byteBudget struct {
	mu      sync.Mutex
	total   int64
	byGroup map[groupKey]int64
}

// take reserves n bytes for g; false when that would pass a bound. Root's
// bytes are not counted.
func (b *byteBudget) take(g groupKey, n int) bool {
	if g.isRoot() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byGroup == nil {
		b.byGroup = map[groupKey]int64{}
	}
	if b.total+int64(n) > totalByteBudget || b.byGroup[g]+int64(n) > groupByteBudget {
		return false
	}
	b.total += int64(n)
	b.byGroup[g] += int64(n)
	return true
}

func (b *byteBudget) give(g groupKey, n int) {
	if g.isRoot() || n == 0 {
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
	buckets map[groupKey]*bucket
	all     bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRates(rate, burst, allRate, allBurst float64) *rates {
	return &rates{rate: rate, burst: burst, allRate: allRate, allBurst: allBurst,
		buckets: map[groupKey]*bucket{}, all: bucket{tokens: allBurst}}
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
func (r *rates) take(g groupKey, now time.Time) time.Duration {
	if g.isRoot() {
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
func (r *rates) allow(g groupKey, now time.Time) bool {
	if g.isRoot() {
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

func (r *rates) group(g groupKey, now time.Time) *bucket {
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
