package dbus

import (
	"errors"
	"sync"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// A cgroup the kernel tagged at mkdir whose path the registry refuses to
// record (a Unicode noncharacter, bytes that are not UTF-8) has a
// cgroup_tags entry and a claimed ID like any other, but no record: the
// exit check, which releases those entries once a container's cgroups
// are gone, never visits it. Without more, a mkdir/rmdir loop of such
// names fills cgroup_tags and id_claims, after which the kernel leaves
// every new cgroup under every autotag parent untagged. So these cgroups
// are kept here, by cgroup ID, and the periodic work looks for their
// removal; a removed one is released as one removed before its event was
// read (releaseRemoved: recorded without a path, exited, released after
// the grace). The set holds at most what cgroup_tags does.
type unrecordedCgroups struct {
	mu sync.Mutex
	m  map[uint64]contid.Tag
	// queue is the pass in progress, as in checkExits.
	queue []uint64
}

// unrecordedBatch bounds the cgroups one tick looks up, as exitBatch does.
const unrecordedBatch = 1000

// note remembers a refused cgroup; it reports whether it was new, so
// that each is warned about once, not at each resynchronization.
func (u *unrecordedCgroups) note(cgid uint64, tag contid.Tag) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[uint64]contid.Tag{}
	}
	if _, ok := u.m[cgid]; ok {
		return false
	}
	u.m[cgid] = tag
	return true
}

// next returns up to unrecordedBatch cgroups of the current pass.
func (u *unrecordedCgroups) next() map[uint64]contid.Tag {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.queue) == 0 {
		for cgid := range u.m {
			u.queue = append(u.queue, cgid)
		}
	}
	n := min(unrecordedBatch, len(u.queue))
	out := make(map[uint64]contid.Tag, n)
	for _, cgid := range u.queue[:n] {
		if tag, ok := u.m[cgid]; ok {
			out[cgid] = tag
		}
	}
	u.queue = u.queue[n:]
	if len(u.queue) == 0 {
		u.queue = nil
	}
	return out
}

func (u *unrecordedCgroups) forget(cgid uint64) {
	u.mu.Lock()
	delete(u.m, cgid)
	u.mu.Unlock()
}

// refusedAdoption reports whether the adoption of cgroup p failed because
// the registry never records such a path; if so the cgroup is kept for
// release, and warn says whether this is the first time it is seen.
func (m *Manager) refusedAdoption(tag contid.Tag, cgid uint64, p string) (refused, warn bool) {
	if p == "" || registry.ValidateCgroupPath(p) == nil {
		return false, false
	}
	return true, m.unrecorded.note(cgid, tag)
}

// releaseUnrecorded releases the kernel entries of refused cgroups that
// are gone; Run calls it each tick.
func (m *Manager) releaseUnrecorded() {
	for cgid, tag := range m.unrecorded.next() {
		if _, err := m.cfg.Cgroups.PathByID(cgid); !errors.Is(err, kernel.ErrNoSuchCgroup) {
			continue
		}
		m.unrecorded.forget(cgid)
		m.releaseRemoved(tag, cgid)
	}
}
