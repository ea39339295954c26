package dbus

import (
	"errors"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// ReleaseGrace is how long a removed cgroup's kernel entries outlive it.
// Nothing that attributes an event needs them once the cgroup is gone: a
// removed cgroup holds no process that could fork or join, and audit events
// of a container's last processes are attributed through pid_tags, which
// outlive the processes on their own. The grace covers what is still in
// flight when the exit check notices the removal: an audit event held for
// reassembly (2 s by default), a kernel event about the cgroup not yet
// read from the ring buffer, and a tag request that resolved the cgroup
// just before it went. Ten seconds is several times all of them.
const ReleaseGrace = 10 * time.Second

// releaseKernel: remove the kernel entries of removed containers. Test
// builds set it to "no" (-ldflags -X) for the control of the map storm
// test, which shows the maps fill without it.
var releaseKernel = "yes"

// pendingRelease is one container whose kernel entries go when due.
type pendingRelease struct {
	due     time.Time
	id      contid.ID // contid.Unset: untag the cgroups only
	cgroups []uint64
}

// scheduleRelease queues the kernel entries of an exited container: its
// cgroups' cgroup_tags entries and, once they are all gone, its id_claims
// entry. The registry's exited record refuses the ID to explicit requests
// from now on, which is what makes dropping the claim safe (see
// kernel.BPF.ReleaseID).
func (m *Manager) scheduleRelease(c *registry.Container) {
	if releaseKernel != "yes" {
		return
	}
	pr := pendingRelease{due: time.Now().Add(ReleaseGrace), id: c.ID}
	for _, cg := range c.Cgroups {
		if cg.ID != 0 {
			pr.cgroups = append(pr.cgroups, cg.ID)
		}
	}
	m.relMu.Lock()
	m.releases = append(m.releases, pr)
	m.relMu.Unlock()
}

// scheduleUntag queues a cgroup_tags entry of a removed cgroup the registry
// holds no record for; its ID's claim stays, as nothing else refuses it.
func (m *Manager) scheduleUntag(cgroupID uint64) {
	if releaseKernel != "yes" {
		return
	}
	m.relMu.Lock()
	m.releases = append(m.releases, pendingRelease{due: time.Now().Add(ReleaseGrace), cgroups: []uint64{cgroupID}})
	m.relMu.Unlock()
}

// releaseDue removes the kernel entries whose grace has passed. A cgroup
// that still exists (it emptied but was not removed) keeps its entry, since
// a process may still join it, and is looked at again one grace later;
// its container's claim waits for it.
func (m *Manager) releaseDue(now time.Time) {
	m.relMu.Lock()
	n := 0
	for n < len(m.releases) && !m.releases[n].due.After(now) {
		n++
	}
	due := m.releases[:n:n]
	m.releases = m.releases[n:]
	if len(m.releases) == 0 {
		m.releases = nil // do not pin the backing array
	}
	m.relMu.Unlock()

	var again []pendingRelease
	for _, pr := range due {
		var kept []uint64
		for _, cg := range pr.cgroups {
			if _, err := m.cfg.Cgroups.PathByID(cg); !errors.Is(err, kernel.ErrNoSuchCgroup) {
				// Still there, or not known to be gone (out of
				// descriptors, a failed read): look again later
				// rather than untag a live cgroup.
				kept = append(kept, cg)
				continue
			}
			if err := m.cfg.Tracker.UntagCgroup(cg); err != nil {
				m.log(PrioWarning, "Failed to remove the kernel tag of removed cgroup %d: %v", cg, err)
			}
		}
		if len(kept) > 0 {
			again = append(again, pendingRelease{due: now.Add(ReleaseGrace), id: pr.id, cgroups: kept})
			continue
		}
		if pr.id == contid.Unset {
			continue
		}
		if err := m.cfg.Tracker.ReleaseID(pr.id); err != nil {
			m.log(PrioWarning, "Failed to release the kernel claim of container %d: %v", pr.id, err)
		}
		// Its processes are gone, so its count is final: journaled now,
		// or never, for the entry goes with the container.
		m.forgetDenials(pr.id)
	}
	if len(again) > 0 {
		m.relMu.Lock()
		m.releases = append(m.releases, again...)
		m.relMu.Unlock()
	}
}

// releaseRemoved handles a kernel tag of a cgroup that is gone: one
// removed before its autotag event was read, or while contidd was down or
// behind. An ID without a record is recorded first and marked exited;
// without the record nothing would refuse the ID once its claim is
// released, and a mkdir/rmdir loop would fill the kernel's maps. An exited
// record's entries are released (again: a restart forgets what was
// pending); an active one's wait for the exit check, as the container may
// have other cgroups.
func (m *Manager) releaseRemoved(tag contid.Tag, cgroupID uint64) {
	c, err := m.cfg.Registry.Get(tag.ID())
	if err == nil {
		if c.State != registry.StateActive {
			m.scheduleRelease(c)
		}
		return
	}
	if _, _, err := m.cfg.Registry.Adopt(tag, registry.Cgroup{ID: cgroupID}); err != nil {
		m.log(PrioWarning, "Failed to record container %d of removed cgroup %d: %v", tag.ID(), cgroupID, err)
		m.scheduleUntag(cgroupID)
		return
	}
	c, err = m.cfg.Registry.MarkExited(tag.ID())
	if err != nil {
		m.log(PrioWarning, "Failed to mark container %d of removed cgroup %d exited: %v", tag.ID(), cgroupID, err)
		m.scheduleUntag(cgroupID)
		return
	}
	m.scheduleRelease(c)
}

// resyncKernelTags reads the kernel's tags again after lost events.
func (m *Manager) resyncKernelTags() {
	tags, err := m.cfg.Tracker.CgroupTags()
	if err != nil {
		m.log(PrioWarning, "Failed to read the kernel's cgroup tags: %v", err)
		return
	}
	if adopted := m.adoptKernelTags(tags); adopted > 0 {
		m.log(PrioInfo, "Adopted %d containers whose autotag events were lost.", adopted)
	}
}
