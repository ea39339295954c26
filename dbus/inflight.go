package dbus

import (
	"context"
	"fmt"
	"sync"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/internal/p2p"
)

// Tag requests of users other than root wait on polkit, which can take
// minutes (an authentication dialog, or an agent that never answers), and
// hold their goroutine and the descriptors the call brought meanwhile. So
// few may be in flight: per user (a group, see subUIDs), and for all users
// together; root's are not counted.
const (
	maxTagCallsPerGroup = 4
	maxTagCalls         = 64
)

type inflight struct {
	mu      sync.Mutex
	all     int
	byGroup map[p2p.Group]int
}

// enter takes a place for g; release gives it back. ok is false when g, or
// all users, have none left.
func (f *inflight) enter(g p2p.Group) (release func(), ok bool) {
	if g.IsRoot() {
		return func() {}, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byGroup == nil {
		f.byGroup = map[p2p.Group]int{}
	}
	if f.byGroup[g] >= maxTagCallsPerGroup || f.all >= maxTagCalls {
		return nil, false
	}
	f.byGroup[g]++
	f.all++
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.all--
			if f.byGroup[g]--; f.byGroup[g] <= 0 {
				delete(f.byGroup, g)
			}
		})
	}, true
}

// ListContainers copies every record and builds a reply of about 100
// bytes per container: 6 MB at MaxContainers. Few are built at once, so
// a flood of them cannot make contidd hold many such copies; root's
// have places of their own.
var (
	rootLists = make(chan struct{}, 4)
	userLists = make(chan struct{}, 2)
)

// enterList waits for a place to build a ListContainers reply.
func (m *Manager) enterList(ctx context.Context, p *peer) (release func(), err error) {
	sem := userLists
	if uid, ok := m.uidOf(ctx, p); ok && uid == 0 {
		sem = rootLists
	}
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: too many ListContainers calls at once", contid.ErrLimitExceeded)
	}
}

// uidOf is the UID the caller's connection was opened with, if known.
func (m *Manager) uidOf(ctx context.Context, p *peer) (uint32, bool) {
	switch {
	case p.origin != nil:
		return p.origin.uid, true
	case p.bus != nil:
		bp := m.busPeers(p.bus)
		if bp == nil {
			return 0, false
		}
		if uid, ok := bp.uid(p.sender); ok {
			return uid, true
		}
		var uid uint32
		err := p.bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, p.sender).Store(&uid)
		if err != nil {
			return 0, false
		}
		bp.setUID(p.sender, uid)
		return uid, true
	}
	return 0, false
}
