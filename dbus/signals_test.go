package dbus

import (
	"sync"
	"testing"
	"time"
)

// Signals reach the transports in the order they were emitted, each once,
// however the announcer batches them, and flush returns only after all.
func TestSignalQueueOrder(t *testing.T) {
	for _, tt := range []struct {
		name      string
		producers int
		each      int
	}{
		{"one producer", 1, 20000},
		{"many producers", 8, 5000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var q signalQueue
			var mu sync.Mutex
			var got []int
			order := func(v int) announcement {
				return func([]emitter) { got = append(got, v) }
			}
			send := func(b []announcement) {
				mu.Lock()
				defer mu.Unlock()
				for _, a := range b {
					a(nil)
				}
			}
			var wg sync.WaitGroup
			for p := 0; p < tt.producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < tt.each; i++ {
						q.push(order(p*tt.each+i), send)
					}
				}()
			}
			wg.Wait()
			q.flush()
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tt.producers*tt.each {
				t.Fatalf("%d signals sent, want %d", len(got), tt.producers*tt.each)
			}
			// Each producer's own signals keep their order.
			last := make([]int, tt.producers)
			for p := range last {
				last[p] = -1
			}
			for _, v := range got {
				p, i := v/tt.each, v%tt.each
				if i != last[p]+1 {
					t.Fatalf("producer %d: signal %d after %d", p, i, last[p])
				}
				last[p] = i
			}
		})
	}
}

// A queue that the announcer cannot empty holds at most maxQueuedSignals:
// the next emit waits for room instead of dropping a signal or growing.
func TestSignalQueueBounded(t *testing.T) {
	var q signalQueue
	release := make(chan struct{})
	var sent int
	send := func(b []announcement) {
		<-release
		sent += len(b)
	}
	// The first signal is taken by the announcer, which then blocks.
	q.push(nil, send)
	for {
		q.mu.Lock()
		taken := len(q.pending) == 0
		q.mu.Unlock()
		if taken {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < maxQueuedSignals; i++ {
		q.push(nil, send)
	}
	blocked := make(chan struct{})
	go func() {
		q.push(nil, send)
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatalf("emit past %d queued signals returned without waiting", maxQueuedSignals)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-blocked
	q.flush()
	if want := maxQueuedSignals + 2; sent != want {
		t.Fatalf("%d signals sent, want %d", sent, want)
	}
}
