package dbus

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// A rootless user's subordinate UIDs draw on that user's allowance; root's
// subordinate UIDs share one of their own, never root's.
func TestSubUIDGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subuid")
	content := "# comment\nalice:100000:65536\n0:300000:65536\nroot:400000:10\nghost:500000:100\nbad:line\nx:1:0\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	lookup := map[string]uint32{"alice": 1000, "root": 0}
	s := newSubUIDs(path)
	s.ranges = parseSubUIDs([]byte(content), func(n string) (uint32, bool) { u, ok := lookup[n]; return u, ok })
	s.checked, s.mtime, s.size = time.Now(), statMtime(t, path), int64(len(content))
	tests := []struct {
		uid  uint32
		want groupKey
	}{
		{0, groupKey{}},
		{1000, groupKey{uid: 1000}},
		{100000, groupKey{uid: 1000}},
		{165535, groupKey{uid: 1000}},
		{165536, groupKey{uid: 131072, block: true}}, // past the range
		{300001, groupKey{uid: 0, rootSub: true}},
		{400009, groupKey{uid: 0, rootSub: true}},
		{500050, groupKey{uid: 500000}}, // an owner that does not resolve
		{65534, groupKey{uid: 65534}},
		// In no range: a 65,536-block, as nspawn's private users use.
		{0x80000 + 5, groupKey{uid: 0x80000, block: true}},
		{0x8ffff, groupKey{uid: 0x80000, block: true}},
		{0x90000, groupKey{uid: 0x90000, block: true}},
	}
	for _, tt := range tests {
		if got := s.group(tt.uid); got != tt.want {
			t.Errorf("group(%d) = %+v, want %+v", tt.uid, got, tt.want)
		}
	}
	if (groupKey{uid: 0, rootSub: true}).isRoot() {
		t.Error("root's subordinate UIDs count as root")
	}
}

func statMtime(t *testing.T, p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// Each user has its allowance, all users together theirs, and root one of
// its own that users cannot use up.
func TestAdmit(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	s := &p2pServer{m: m, conns: map[*p2pConn]struct{}{}, byGroup: map[groupKey]int{},
		connects: newRates(1e9, 1e9, 1e9, 1e9)}
	conn := func(uid uint32) *p2pConn { return &p2pConn{uid: uid, group: groupKey{uid: uid}} }
	for i := 0; i < maxConnsPerGroup; i++ {
		if !s.admit(conn(1000)) {
			t.Fatalf("connection %d of a user refused", i)
		}
	}
	if s.admit(conn(1000)) {
		t.Fatal("a user got more than its allowance")
	}
	for uid := uint32(2000); s.nonRoot < maxP2PConns; uid++ {
		for i := 0; i < maxConnsPerGroup && s.nonRoot < maxP2PConns; i++ {
			if !s.admit(conn(uid)) {
				t.Fatalf("uid %d refused at %d connections in all", uid, s.nonRoot)
			}
		}
	}
	if s.admit(conn(99999)) {
		t.Fatal("a user was admitted beyond the total")
	}
	for i := 0; i < maxRootConns; i++ {
		if !s.admit(conn(0)) {
			t.Fatalf("root refused at %d connections while users held all theirs", i)
		}
	}
	if s.admit(conn(0)) {
		t.Fatal("root got more than its allowance")
	}
	for c := range s.conns {
		s.remove(c)
	}
	if s.nonRoot != 0 || len(s.byGroup) != 0 {
		t.Fatalf("after removing all: %d users' connections, groups %v", s.nonRoot, s.byGroup)
	}
}

// A user's rate and all users' rate both apply; root has none.
func TestRates(t *testing.T) {
	r := newRates(10, 5, 100, 8)
	now := time.Now()
	a, b := groupKey{uid: 1}, groupKey{uid: 2}
	for i := 0; i < 5; i++ {
		if !r.allow(a, now) {
			t.Fatalf("burst %d refused", i)
		}
	}
	if r.allow(a, now) {
		t.Fatal("a user went past its burst")
	}
	for i := 0; i < 3; i++ {
		if !r.allow(b, now) {
			t.Fatalf("another user's %d refused", i)
		}
	}
	if r.allow(b, now) {
		t.Fatal("the users together went past their burst")
	}
	if !r.allow(groupKey{}, now) || r.take(groupKey{}, now) != 0 {
		t.Fatal("root was limited")
	}
	if !r.allow(a, now.Add(time.Second)) {
		t.Fatal("no refill after a second")
	}
	waited := false
	for i := 0; i < 10 && !waited; i++ {
		waited = r.take(a, now.Add(time.Second)) > 0
	}
	if !waited {
		t.Fatal("take past the burst asked for no wait")
	}
}

// The queue refuses what a peer that does not read would make contidd
// hold, skips signals until the peer had its first reply, numbers what it
// queues, and gives back every byte when it closes.
func TestOutQueue(t *testing.T) {
	var b byteBudget
	q := newOutQueue(&b, groupKey{uid: 1000})
	msg := func(n int) []byte { return make([]byte, n) }
	if err := q.push(msg(64), true); err != nil || len(q.msgs) != 0 {
		t.Fatalf("a signal before the first reply: %v, %d queued", err, len(q.msgs))
	}
	for i := 0; i < maxQueuedMessages; i++ {
		if err := q.push(msg(64), i%2 == 1); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := q.push(msg(64), true); err != errBehind {
		t.Fatalf("message past the count: %v", err)
	}
	bufs, ok := q.next()
	if !ok || len(bufs) != maxQueuedMessages {
		t.Fatalf("next took %d", len(bufs))
	}
	if s1, s2 := bufs[0][8], bufs[1][8]; s1 != 1 || s2 != 2 {
		t.Fatalf("serials %d, %d", s1, s2)
	}
	// The writer now holds that batch. While its write goes on, the
	// queue may grow past stalledQueue; once the write is stuck for
	// writeStall, it may not.
	now := time.Now()
	q.now = func() time.Time { return now }
	for i := 0; i < stalledQueue; i++ {
		if err := q.push(msg(64), true); err != nil {
			t.Fatalf("message %d behind a write in progress: %v", i, err)
		}
	}
	if err := q.push(msg(64), true); err != nil {
		t.Fatalf("past stalledQueue behind a write that is not stuck: %v", err)
	}
	now = now.Add(writeStall)
	if err := q.push(msg(64), true); err != errBehind {
		t.Fatalf("past stalledQueue behind a write stuck for %v: %v", writeStall, err)
	}
	if bufs, ok := q.next(); !ok || len(bufs) != stalledQueue+1 {
		t.Fatalf("next took %d", len(bufs))
	}
	// One large reply fits an empty queue; nothing fits behind it.
	if err := q.push(msg(maxQueuedBytes+10), false); err != nil {
		t.Fatalf("a large reply to an empty queue: %v", err)
	}
	if err := q.push(msg(64), true); err != errBehind {
		t.Fatalf("behind a full queue: %v", err)
	}
	if dropped := q.close(); dropped != 0 {
		t.Fatalf("close dropped %d signals, want 0 (none was queued)", dropped)
	}
	if b.total != 0 {
		t.Fatalf("the budget holds %d bytes after close", b.total)
	}
	q2 := newOutQueue(&b, groupKey{uid: 1000})
	_ = q2.push(msg(64), false)
	_ = q2.push(msg(64), true)
	_ = q2.push(msg(64), true)
	if dropped := q2.close(); dropped != 2 {
		t.Fatalf("close dropped %d signals, want 2", dropped)
	}
	if err := q2.push(msg(64), false); err != errQueueClosed {
		t.Fatalf("push after close: %v", err)
	}
}

// The byte budget holds each user to its share and all users to theirs.
func TestByteBudget(t *testing.T) {
	var b byteBudget
	a, c := groupKey{uid: 1}, groupKey{uid: 99}
	if !b.take(a, groupByteBudget) || b.take(a, 1) {
		t.Fatal("a user's share")
	}
	for uid := uint32(2); b.take(groupKey{uid: uid}, groupByteBudget); uid++ {
	}
	if b.total > totalByteBudget {
		t.Fatalf("%d bytes held, the bound is %d", b.total, totalByteBudget)
	}
	if !b.take(groupKey{}, totalByteBudget) {
		t.Fatal("root was refused")
	}
	b.give(a, groupByteBudget)
	if !b.take(c, 1) {
		t.Fatal("nothing given back")
	}
}

func TestInflight(t *testing.T) {
	var f inflight
	var releases []func()
	for i := 0; i < maxTagCallsPerGroup; i++ {
		r, ok := f.enter(groupKey{uid: 1000})
		if !ok {
			t.Fatalf("call %d refused", i)
		}
		releases = append(releases, r)
	}
	if _, ok := f.enter(groupKey{uid: 1000}); ok {
		t.Fatal("a user went past its calls in flight")
	}
	if _, ok := f.enter(groupKey{}); !ok {
		t.Fatal("root was limited")
	}
	releases[0]()
	releases[0]()
	if _, ok := f.enter(groupKey{uid: 1000}); !ok {
		t.Fatal("a released place was not given back")
	}
	if f.all != maxTagCallsPerGroup {
		t.Fatalf("%d in flight, want %d (a double release counted twice?)", f.all, maxTagCallsPerGroup)
	}
}

// However full other peers made the byte budgets, a peer still gets its
// replies up to its reserve; beyond it, a reply needs room in the budgets
// and is refused as errNoBudget, not as a peer that fell behind.
func TestOutQueueReserve(t *testing.T) {
	var b byteBudget
	for uid := uint32(2); b.take(groupKey{uid: uid}, groupByteBudget); uid++ {
	}
	victim := groupKey{uid: 1000}
	q := newOutQueue(&b, victim)
	for sent := 0; sent+1024 <= replyReserve; sent += 1024 {
		if err := q.push(make([]byte, 1024), false); err != nil {
			t.Fatalf("a reply within the reserve, %d bytes queued: %v", sent, err)
		}
	}
	if err := q.push(make([]byte, 1024), false); err != errNoBudget {
		t.Fatalf("a reply past the reserve with the budgets full: %v, want errNoBudget", err)
	}
	// Once the writer has taken the batch and comes back for more, the
	// reserve is free again.
	if _, ok := q.next(); !ok {
		t.Fatal("next")
	}
	done := make(chan bool)
	go func() { _, ok := q.next(); done <- ok }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		own := q.own
		q.mu.Unlock()
		if own == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reserve still holds %d bytes after the batch was written", own)
		}
		time.Sleep(time.Millisecond)
	}
	if err := q.push(make([]byte, 1024), false); err != nil {
		t.Fatalf("a reply after the queue was written: %v", err)
	}
	if !<-done {
		t.Fatal("the writer found the queue closed")
	}
	total := b.total
	q.close()
	if b.total != total {
		t.Fatalf("closing a queue that held only its reserve changed the budget: %d -> %d", total, b.total)
	}
}

// UID 0 counts as root only outside every container. Every connection
// from a container draws on its container's allowance, whatever its UID
// (root in a container can switch among any number of UIDs), and a
// connector that is gone on one of its own, so none can use up root's or
// take one allowance per UID.
func TestGroupOfContainer(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	tr := m.cfg.Tracker.(*fakeTracker)
	s := &p2pServer{m: m, groups: newSubUIDs(filepath.Join(t.TempDir(), "subuid"))}
	self := uint32(os.Getpid())
	gone := uint32(1<<22 + 7)
	tag := func(id contid.ID) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if id == contid.Unset {
			delete(tr.pids, self)
		} else {
			tr.pids[self] = id
		}
	}
	for _, chain := range []contid.Chain{{42}, {43, 42}, {44, 43, 42}} {
		cg := registry.Cgroup{Path: fmt.Sprintf("/machine.slice/n%d.scope", chain.ID()), ID: uint64(chain.ID())}
		if _, _, err := m.cfg.Registry.Adopt(contid.Tag{Chain: chain}, cg); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		in   contid.ID
		uid  uint32
		pid  uint32
		want groupKey
	}{
		{"root in no container", contid.Unset, 0, self, groupKey{}},
		{"user in no container", contid.Unset, 1000, self, groupKey{uid: 1000}},
		{"root in container 42", 42, 0, self, containerGroup(42)},
		{"user 1000 in container 42", 42, 1000, self, containerGroup(42)},
		{"user 2000 in container 42: the same allowance", 42, 2000, self, containerGroup(42)},
		{"root whose connector is gone", contid.Unset, 0, gone, containerGroup(contid.Invalid)},
		{"user whose connector is gone", contid.Unset, 1000, gone, containerGroup(contid.Invalid)},
		{"root in 44, nested in 43 in 42: 42's allowance", 44, 0, self, containerGroup(42)},
		{"root in 43, nested in 42: 42's allowance", 43, 0, self, containerGroup(42)},
		{"root in 45, which contidd has no record of: the unknown containers' allowance", 45, 0, self, containerGroup(contid.Invalid)},
	} {
		tag(tc.in)
		if g := s.groupOf(tc.uid, tc.pid); g != tc.want {
			t.Errorf("%s: group %+v, want %+v", tc.name, g, tc.want)
		}
	}
	tag(contid.Unset)
}
