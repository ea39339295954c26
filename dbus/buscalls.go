package dbus

import (
	"context"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// busCalls counts the calls the bus delivered that are not answered yet,
// from godbus's interceptors: a call is counted as it is read, before it
// is dispatched, and no longer once its reply or error is handed to the
// transport.
type busCalls struct {
	mu      sync.Mutex
	open    map[busCallKey]struct{}
	drained *sync.Cond
}

type busCallKey struct {
	peer   string
	serial uint32
}

func newBusCalls() *busCalls {
	c := &busCalls{open: map[busCallKey]struct{}{}}
	c.drained = sync.NewCond(&c.mu)
	return c
}

// in is the incoming interceptor's part.
func (c *busCalls) in(msg *godbus.Message) {
	if msg.Type != godbus.TypeMethodCall || msg.Flags&godbus.FlagNoReplyExpected != 0 {
		return
	}
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	c.mu.Lock()
	c.open[busCallKey{sender, msg.Serial()}] = struct{}{}
	c.mu.Unlock()
}

// out is the outgoing interceptor's part.
func (c *busCalls) out(msg *godbus.Message) {
	if msg.Type != godbus.TypeMethodReply && msg.Type != godbus.TypeError {
		return
	}
	dest, _ := msg.Headers[godbus.FieldDestination].Value().(string)
	serial, _ := msg.Headers[godbus.FieldReplySerial].Value().(uint32)
	c.mu.Lock()
	delete(c.open, busCallKey{dest, serial})
	if len(c.open) == 0 {
		c.drained.Broadcast()
	}
	c.mu.Unlock()
}

// wait returns once no call is open, or after grace; it reports how many
// are left unanswered.
func (c *busCalls) wait(grace time.Duration) int {
	timer := time.AfterFunc(grace, func() {
		c.mu.Lock()
		c.drained.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(grace)
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.open) > 0 && time.Now().Before(deadline) {
		c.drained.Wait()
	}
	return len(c.open)
}

// busLeaveGrace bounds how long a stopping contidd waits for its bus
// calls, as shutdownGrace does for the peer-to-peer socket's.
const busLeaveGrace = 3 * time.Second

// LeaveBus gives up the bus name and waits, up to a grace period, until
// every call the bus delivered before has been answered, so that a client
// whose call arrived just before a restart gets its reply rather than
// "disconnected without replying". dbus-daemon keeps the calls sent after
// the release for the next contidd, which bus activation starts. The
// caller closes conn afterwards.
func (m *Manager) LeaveBus(conn *godbus.Conn) {
	m.mu.Lock()
	calls := m.busCalls[conn]
	m.mu.Unlock()
	// Calls reach contidd in the order dbus-daemon routed them, and the
	// release's reply comes after every call routed to the name before
	// it: once it is back, every such call has been counted.
	// A dbus-daemon that no longer answers does not hold the stop.
	ctx, cancel := context.WithTimeout(context.Background(), busDriverTimeout)
	defer cancel()
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.ReleaseName", 0, client.BusName).Err; err != nil {
		m.log(PrioNotice, "Releasing %s: %v", client.BusName, err)
		return
	}
	if calls == nil {
		return
	}
	if left := calls.wait(busLeaveGrace); left > 0 {
		m.log(PrioNotice, "Leaving the system bus with %d calls unanswered after %s.", left, busLeaveGrace)
	}
	// The last reply was handed to the transport after the count saw it:
	// give the write that follows a moment before the socket closes.
	time.Sleep(20 * time.Millisecond)
}
