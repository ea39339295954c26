package dbus

import "sync"

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
	byGroup map[groupKey]int
}

// enter takes a place for g; release gives it back. ok is false when g, or
// all users, have none left.
func (f *inflight) enter(g groupKey) (release func(), ok bool) {
	if g.isRoot() {
		return func() {}, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byGroup == nil {
		f.byGroup = map[groupKey]int{}
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
