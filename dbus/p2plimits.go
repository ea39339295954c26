package dbus

import (
	"bufio"
	"bytes"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
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
	maxMessageSize  = 16 << 20
	// smallMessage: every call contidd serves fits in far less. Larger
	// messages are read only against the byte budget.
	smallMessage = 64 << 10
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

	// Outgoing. A reader that falls this far behind is disconnected: it
	// would only make contidd hold more for it.
	maxQueuedMessages = 128
	maxQueuedBytes    = 1 << 20
	writeTimeout      = 5 * time.Second

	// Bytes held for peers other than root: large incoming messages while
	// they arrive, and queued outgoing ones until written.
	groupByteBudget = 16 << 20
	totalByteBudget = 48 << 20

	maxAuthLine  = 1024
	maxAuthLines = 32
	authTimeout  = 30 * time.Second
)

// groupKey is whose allowance a connection draws on: a user, or root's
// subordinate UIDs as one user of their own.
type groupKey struct {
	uid uint32
	// rootSub: a UID in one of root's subordinate ranges (rootful
	// containers with their own user namespace). They share an allowance,
	// and never root's.
	rootSub bool
}

func (g groupKey) isRoot() bool { return g.uid == 0 && !g.rootSub }

// subUIDs groups the UIDs of /etc/subuid with the user they belong to. A
// rootless user's containers run as that user's subordinate UIDs, so
// without this a user with a range of 65,536 UIDs would get 65,536
// allowances. UIDs in no range are their own group. Only the file is read
// (as shadow-utils' newuidmap does by default); ranges handed out by an
// NSS subid module are not seen.
type subUIDs struct {
	path string

	mu     sync.Mutex
	mtime  time.Time
	size   int64
	ranges []subUIDRange
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
	return groupKey{uid: uid}
}

func (s *subUIDs) refresh() {
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
		owner, ok := lookup(f[0])
		if !ok {
			owner = uint32(first)
		}
		out = append(out, subUIDRange{first: first, count: count, owner: groupKey{uid: owner, rootSub: owner == 0}})
	}
	return out
}

func lookupUID(name string) (uint32, bool) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), true
	}
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
