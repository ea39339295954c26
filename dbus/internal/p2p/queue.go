package p2p

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

// outQueue holds what contidd still has to write to one peer. Callers
// (replies from request goroutines, signals from emit) only append under a
// short lock; the connection's own writer takes messages off and does the
// socket I/O with a deadline, holding no lock. A peer that falls behind is
// not waited for: the message that does not fit is refused, and the
// caller disconnects the peer.
type outQueue struct {
	budget *byteBudget
	group  Group

	mu    sync.Mutex
	cond  *sync.Cond
	msgs  []outMessage
	bytes int
	// serial numbers the messages in the order they are queued, which is
	// the order they are written.
	serial uint32
	// answered: a reply went out. Only then may signals follow: sd-bus
	// (busctl, systemd tools) fails the connection with EIO if anything
	// but the reply to its Hello arrives first.
	answered bool
	closed   bool
	// writing is what the writer holds, still charged to the budget
	// until written; writingOwn the part of it from the reserve.
	writing, writingOwn int
	// own: bytes held (queued or being written) within replyReserve,
	// charged to no budget.
	own int
	// writeSince: when the writer took the batch it is writing; zero
	// while it waits for messages.
	writeSince time.Time
	now        func() time.Time
	// send, when set, writes to the socket without waiting; it returns
	// how much of b the socket took.
	send func(b []byte) int
}

type outMessage struct {
	b      []byte
	signal bool
	// charged: the part of b taken from the byte budgets; the rest came
	// from the peer's reserve.
	charged int
}

var (
	errQueueClosed = errors.New("connection closed")
	errBehind      = errors.New("the peer does not read what contidd sends it")
	// errNoBudget: the message is beyond the peer's reserve and the byte
	// budgets, which other peers may have filled, have no room for it.
	errNoBudget = errors.New("no room in the byte budgets")
)

func newOutQueue(budget *byteBudget, g Group) *outQueue {
	q := &outQueue{budget: budget, group: g, now: time.Now}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push queues an encoded message (little-endian, serial field to be set).
// A signal to a peer that has had no reply yet is skipped (nil error).
// errBehind means the peer has fallen behind: the caller disconnects it.
// errNoBudget means b is beyond the peer's reserve and the byte budgets
// have no room for it.
func (q *outQueue) push(b []byte, signal bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return errQueueClosed
	case signal && !q.answered:
		return nil
	case len(q.msgs) >= maxQueuedMessages:
		return errBehind
	case len(q.msgs) >= stalledQueue && !q.writeSince.IsZero() && q.now().Sub(q.writeSince) >= writeStall:
		return errBehind
	// One message of any size may wait in an empty queue (a long
	// ListContainers reply); behind others, the queue is bounded.
	case len(q.msgs) > 0 && q.bytes+len(b) > maxQueuedBytes:
		return errBehind
	}
	own := min(len(b), max(replyReserve-q.own, 0))
	charged := len(b) - own
	if charged > 0 && !q.budget.take(q.group, charged) {
		return errNoBudget
	}
	q.serial++
	if q.serial == 0 {
		q.serial = 1
	}
	binary.LittleEndian.PutUint32(b[8:12], q.serial)
	if !signal {
		q.answered = true
	}
	if n := q.sendNow(b, signal); n > 0 {
		// What the socket took is no longer held: only the rest stays
		// charged, to the reserve first.
		b = b[n:]
		keptOwn := min(own, len(b))
		keptCharged := len(b) - keptOwn
		q.budget.give(q.group, charged-keptCharged)
		own, charged = keptOwn, keptCharged
		if len(b) == 0 {
			return nil
		}
	}
	q.own += own
	q.msgs = append(q.msgs, outMessage{b: b, signal: signal, charged: charged})
	q.bytes += len(b)
	q.cond.Signal()
	return nil
}

// sendNow hands a reply to the socket at once when nothing is queued or
// being written, and returns how much of it the socket took. The reply
// then reaches a peer that reads without waiting for the connection's
// writer to be scheduled, which on a busy host (a thousand connections
// being refused) took milliseconds. The send never waits for the peer, so
// holding the queue's lock over it keeps the order without letting a peer
// that does not read hold anyone up. Signals are left to the writer: one
// signal goes to every connection, and a writer that wakes for several
// writes them with one system call.
func (q *outQueue) sendNow(b []byte, signal bool) int {
	if signal || q.send == nil || len(q.msgs) > 0 || !q.writeSince.IsZero() {
		return 0
	}
	return q.send(b)
}

// next waits for messages to write and takes all that are queued, so a
// peer that reads slowly is written to with fewer, larger writes; false
// once the queue closed.
func (q *outQueue) next() (net.Buffers, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.budget.give(q.group, q.writing)
	q.own -= q.writingOwn
	q.writing, q.writingOwn = 0, 0
	q.writeSince = time.Time{}
	for len(q.msgs) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	q.writeSince = q.now()
	out := make(net.Buffers, len(q.msgs))
	for i, m := range q.msgs {
		out[i] = m.b
		q.writing += m.charged
		q.writingOwn += len(m.b) - m.charged
	}
	q.bytes = 0
	q.msgs = q.msgs[:0]
	return out, true
}

// close ends the queue, gives its bytes back and returns how many signals
// were never written.
func (q *outQueue) close() (droppedSignals int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	q.closed = true
	for _, m := range q.msgs {
		if m.signal {
			droppedSignals++
		}
		q.budget.give(q.group, m.charged)
	}
	q.budget.give(q.group, q.writing)
	q.msgs, q.bytes, q.writing, q.writingOwn, q.own = nil, 0, 0, 0, 0
	q.cond.Broadcast()
	return droppedSignals
}
