package daemon

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	godbus "github.com/godbus/dbus/v5"

	cdbus "github.com/contid/contid/dbus"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel"
)

// progress is what the watchdog asks before each ping: has every loop
// contidd depends on moved lately? A loop that hangs (a deadlock, a
// journald that no longer reads, a stuck system call) then stops the
// pings, and systemd restarts contidd after WatchdogSec. A loop that is
// merely idle still beats on its own timeout, so a quiet host is not
// taken for a hung one.
type progress struct {
	// every is how often an idle loop beats on its own: an eighth of
	// WatchdogSec, so four beats fit in the half of it after which a
	// loop counts as stalled, and at most a second.
	every time.Duration
	mu    sync.Mutex
	loops map[string]*heartbeat
}

// heartbeat is one loop's sign of life. A loop beats each time round
// (work done or its own timeout); a piece of work that may block without
// a timeout of its own (a write to journald) is bracketed by begin and
// end instead, so that a long-idle writer counts as alive and a writer
// stuck in one write does not.
type heartbeat struct {
	last      atomic.Int64 // unix nanoseconds of the last beat
	busySince atomic.Int64 // unix nanoseconds a bracketed piece of work began, 0 when none runs
	ticking   bool
}

func newProgress(watchdog time.Duration) *progress {
	every := min(max(watchdog/8, 100*time.Millisecond), time.Second)
	return &progress{every: every, loops: map[string]*heartbeat{}}
}

// watchdogInterval is WatchdogSec when systemd asks for pings, else 0.
func watchdogInterval() time.Duration {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return interval
}

// beatEvery is the idle beat interval; a nil progress (no watchdog
// wiring, as in tests of single parts) uses a second.
func (p *progress) beatEvery() time.Duration {
	if p == nil || p.every == 0 {
		return time.Second
	}
	return p.every
}

// loop registers a loop that beats each time round.
func (p *progress) loop(name string) *heartbeat {
	return p.add(name, true)
}

// work registers a loop watched by begin and end.
func (p *progress) work(name string) *heartbeat {
	return p.add(name, false)
}

func (p *progress) add(name string, ticking bool) *heartbeat {
	h := &heartbeat{ticking: ticking}
	h.beat()
	if p == nil {
		return h
	}
	p.mu.Lock()
	p.loops[name] = h
	p.mu.Unlock()
	return h
}

// remove stops watching a loop that ended on purpose.
func (p *progress) remove(name string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.loops, name)
	p.mu.Unlock()
}

func (h *heartbeat) beat()  { h.last.Store(time.Now().UnixNano()) }
func (h *heartbeat) begin() { h.busySince.Store(time.Now().UnixNano()) }
func (h *heartbeat) end()   { h.busySince.Store(0); h.beat() }

// stall is a loop that has not moved for age.
type stall struct {
	name string
	age  time.Duration
}

// stalled lists the loops that have not moved for longer than limit, by
// name.
func (p *progress) stalled(now time.Time, limit time.Duration) []stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []stall
	for name, h := range p.loops {
		since := h.busySince.Load()
		if h.ticking {
			since = h.last.Load()
		}
		if since == 0 {
			continue
		}
		if age := now.Sub(time.Unix(0, since)); age > limit {
			out = append(out, stall{name, age})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// describe names the stalled loops for the log: "audit reader (3s)", and
// joins their names alone, by which the watchdog tells a new stall from
// the one it already reported.
func describe(stuck []stall) (text, names string) {
	var t, n []string
	for _, s := range stuck {
		t = append(t, fmt.Sprintf("%s (%s)", s.name, s.age.Round(time.Second)))
		n = append(n, s.name)
	}
	return strings.Join(t, ", "), strings.Join(n, ",")
}

// watchdog pings systemd while every loop makes progress, four times per
// WatchdogSec. A loop counts as stalled after half of WatchdogSec without
// a beat, so systemd restarts a contidd with a hung loop at most about
// WatchdogSec after the last ping. Pings resume if the loop recovers
// before that: a journald that pauses for a moment is no reason to
// restart, and only a loop that stays stuck for WatchdogSec is.
func watchdog(ctx context.Context, p *progress, log *Logger) error {
	interval := watchdogInterval()
	if interval == 0 {
		return nil
	}
	limit := interval / 2
	t := time.NewTicker(interval / 4)
	defer t.Stop()
	held := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if stuck := p.stalled(now, limit); len(stuck) > 0 {
				text, names := describe(stuck)
				if names != held {
					log.Logf(cdbus.PrioErr, "Not pinging the watchdog: no progress in %s; systemd restarts contidd if this lasts.", text)
				}
				held = names
				continue
			}
			if held != "" {
				log.Logf(cdbus.PrioNotice, "Every loop makes progress again; pinging the watchdog.")
				held = ""
			}
			_, _ = sddaemon.SdNotify(false, "WATCHDOG=1")
		}
	}
}

// probeBus is the D-Bus loop's heartbeat: it reads the Manager's Version
// property through the peer-to-peer socket, as a client would, so that
// a beat shows that the endpoint accepts, the connection is read and the
// call is routed and answered. A failed or slow call beats not; the
// connection is made again for the next probe.
func probeBus(ctx context.Context, path string, interval time.Duration, h *heartbeat) error {
	var c *client.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	every(ctx, interval, func() {
		if c == nil {
			var err error
			if c, err = client.ConnectP2P(path); err != nil {
				c = nil
				return
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*interval)
		defer cancel()
		var v godbus.Variant
		err := c.Conn().Object(client.BusName, client.ManagerPath).CallWithContext(cctx, "org.freedesktop.DBus.Properties.Get", 0, client.ManagerInterface, "Version").Store(&v)
		if err != nil {
			c.Close()
			c = nil
			return
		}
		h.beat()
	})
	return nil
}

// readEventOrTick waits for the next kernel event at most for the time
// given, so that an idle event loop still beats.
func readEventOrTick(ctx context.Context, t *kernel.BPF, wait time.Duration) (kernel.Event, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ev, err := t.ReadEvent(rctx)
	if err != nil && ctx.Err() == nil && rctx.Err() != nil {
		return kernel.Event{}, false, nil
	}
	return ev, err == nil, err
}

// watchedSender brackets each journal write, the one step of the audit
// loop that can block with no timeout (journald stopped, its socket full).
type watchedSender struct {
	journal.Sender
	h *heartbeat
}

func (s watchedSender) Send(e *journal.Entry) error {
	s.h.begin()
	defer s.h.end()
	return s.Sender.Send(e)
}

// beatingForwarder is the audit reader's handler: the forwarder, plus a
// beat on each Tick, which the reader calls at least every 100 ms between
// records and never while it is stuck handing one over.
type beatingForwarder struct {
	*journal.Forwarder
	h *heartbeat
}

func (f beatingForwarder) Tick(now time.Time) {
	f.h.beat()
	f.Forwarder.Tick(now)
}
