package p2p

import (
	"testing"
	"time"
)

// Each user has its allowance, all users together theirs, and root one of
// its own that users cannot use up.
func TestAdmit(t *testing.T) {
	s := &Server{conns: map[*peerConn]struct{}{}, byGroup: map[Group]int{},
		connects: newRates(1e9, 1e9, 1e9, 1e9)}
	conn := func(uid uint32) *peerConn { return &peerConn{uid: uid, group: Group{UID: uid}} }
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
	a, b := Group{UID: 1}, Group{UID: 2}
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
	if !r.allow(Group{}, now) || r.take(Group{}, now) != 0 {
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
	q := newOutQueue(&b, Group{UID: 1000})
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
	q2 := newOutQueue(&b, Group{UID: 1000})
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
	a, c := Group{UID: 1}, Group{UID: 99}
	if !b.take(a, groupByteBudget) || b.take(a, 1) {
		t.Fatal("a user's share")
	}
	for uid := uint32(2); b.take(Group{UID: uid}, groupByteBudget); uid++ {
	}
	if b.total > totalByteBudget {
		t.Fatalf("%d bytes held, the bound is %d", b.total, totalByteBudget)
	}
	if !b.take(Group{}, totalByteBudget) {
		t.Fatal("root was refused")
	}
	b.give(a, groupByteBudget)
	if !b.take(c, 1) {
		t.Fatal("nothing given back")
	}
}

// However full other peers made the byte budgets, a peer still gets its
// replies up to its reserve; beyond it, a reply needs room in the budgets
// and is refused as errNoBudget, not as a peer that fell behind.
func TestOutQueueReserve(t *testing.T) {
	var b byteBudget
	for uid := uint32(2); b.take(Group{UID: uid}, groupByteBudget); uid++ {
	}
	victim := Group{UID: 1000}
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

// What the socket takes of a reply at once is neither queued nor charged;
// the rest is queued in order and charged, to the connection's reserve
// first; nothing is sent past a message that waits or a write in
// progress; and signals are left to the writer.
func TestOutQueueSendsAtOnce(t *testing.T) {
	const size = replyReserve + 4096
	for _, tt := range []struct {
		name       string
		takes      int  // what the socket takes of each send
		busy       bool // a message already waits
		signal     bool // a signal, not a reply, is pushed
		wantQueued int  // bytes queued after the push
		wantSends  int
	}{
		{"socket takes all", size, false, false, 0, 1},
		{"socket takes nothing", 0, false, false, size, 1},
		{"socket takes part", 1000, false, false, size - 1000, 1},
		{"behind a waiting message", size, true, false, size + 64, 0},
		{"a signal waits for the writer", size, false, true, size, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b byteBudget
			q := newOutQueue(&b, Group{UID: 1000})
			if tt.busy {
				if err := q.push(make([]byte, 64), false); err != nil {
					t.Fatal(err)
				}
			}
			var sent [][]byte
			q.send = func(p []byte) int {
				n := min(tt.takes, len(p))
				sent = append(sent, p[:n])
				return n
			}
			q.answered = true // signals are skipped before the first reply
			if err := q.push(make([]byte, size), tt.signal); err != nil {
				t.Fatal(err)
			}
			if len(sent) != tt.wantSends {
				t.Fatalf("%d sends, want %d", len(sent), tt.wantSends)
			}
			if q.bytes != tt.wantQueued {
				t.Fatalf("%d bytes queued, want %d", q.bytes, tt.wantQueued)
			}
			// Only what exceeds the reserve is charged to the budget.
			if want := int64(max(tt.wantQueued-replyReserve, 0)); b.total != want {
				t.Fatalf("budget holds %d bytes, want %d", b.total, want)
			}
			if len(sent) > 0 && len(sent[0]) > 0 && sent[0][8] != 1 {
				t.Fatalf("sent with serial %d, want 1", sent[0][8])
			}
			// While the writer holds a batch, nothing is sent past it.
			if tt.wantQueued > 0 {
				if _, ok := q.next(); !ok {
					t.Fatal("queue closed")
				}
				before := len(sent)
				if err := q.push(make([]byte, 64), true); err != nil {
					t.Fatal(err)
				}
				if len(sent) != before {
					t.Fatal("sent at once while the writer was writing")
				}
			}
			q.close()
			if b.total != 0 {
				t.Fatalf("the budget holds %d bytes after close", b.total)
			}
		})
	}
}
