package dbus

import "sync"

// announcement is queued work that ends in signals, run with the
// transports' emitters.
type announcement func(es []emitter)

// maxQueuedSignals bounds the announcements waiting for the announcer.
// Past it, emit waits for the announcer, as every emit once waited for the
// transports: nothing is dropped here, and memory stays bounded when
// signals come faster than they can be sent (a system bus that does not
// read). No one emits while holding a lock the announcer takes.
const maxQueuedSignals = 4096

// signalQueue hands announcements, in order, to one announcer goroutine
// at a time. The announcer exists only while announcements wait, so an
// idle Manager holds no goroutine for it.
type signalQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []announcement
	sending bool
}

func (q *signalQueue) init() {
	if q.cond == nil {
		q.cond = sync.NewCond(&q.mu)
	}
}

// push queues a and starts an announcer, running send on each batch,
// unless one runs.
func (q *signalQueue) push(a announcement, send func([]announcement)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for len(q.pending) >= maxQueuedSignals {
		q.cond.Wait()
	}
	q.pending = append(q.pending, a)
	if !q.sending {
		q.sending = true
		go q.run(send)
	}
}

func (q *signalQueue) run(send func([]announcement)) {
	q.mu.Lock()
	for len(q.pending) > 0 {
		batch := q.pending
		q.pending = nil
		q.cond.Broadcast()
		q.mu.Unlock()
		send(batch)
		q.mu.Lock()
	}
	q.sending = false
	q.cond.Broadcast()
	q.mu.Unlock()
}

// flush waits until every announcement pushed before it has run.
func (q *signalQueue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for q.sending {
		q.cond.Wait()
	}
}
