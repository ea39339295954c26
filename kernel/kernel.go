// Package kernel is everything in contid that talks to the kernel: the
// eBPF programs and their pinned maps, the feature probe that picks
// enforcing or tracking mode, cgroup2 discovery and cgroup IDs.
//
// The rest of contid uses it only through the Tracker interface, so the
// registry and the D-Bus layer can be tested without root.
package kernel

import (
	"context"
	"errors"
	"time"

	"github.com/contid/contid"
)

// PinDir is where the maps, programs and links live across daemon restarts.
const PinDir = "/sys/fs/bpf/contid"

var (
	// ErrIDTaken: the ID was already claimed in this boot, by user space
	// or by the kernel's autotag.
	ErrIDTaken = contid.ErrIDTaken
	// ErrNotTagged: the process or cgroup carries no ID.
	ErrNotTagged = errors.New("not tagged")
	// ErrNoProcess: the process has exited (or the pidfd is stale).
	ErrNoProcess = errors.New("no such process")
)

// EventKind says what a ring buffer event reports: enum event_kind in
// bpf/contid.h.
type EventKind uint32

const (
	// EventTagged: a task took an ID (fork into a tagged cgroup, join,
	// or a user-space TagProcess/TagCgroup).
	EventTagged = EventKind(contidEventKindEV_TAGGED)
	// EventAutotag: the kernel gave a new cgroup an ID at mkdir.
	EventAutotag = EventKind(contidEventKindEV_AUTOTAG)
	// EventDenied: an enforcing-mode hook refused a tagged task.
	EventDenied = EventKind(contidEventKindEV_DENIED)
	// EventJoinRefused: a tagged task joined a cgroup whose ID is not
	// nested below its own and kept its ID (write-once).
	EventJoinRefused = EventKind(contidEventKindEV_JOIN_REFUSED)
	// EventLost: the ring buffer was full; Count events were dropped.
	EventLost = EventKind(contidEventKindEV_LOST)
)

// Event is one record from the contid ring buffer.
type Event struct {
	Kind     EventKind
	Tag      contid.Tag // the ID applied, autotagged, or the denied task's
	CgroupID uint64
	PID      uint32 // tgid
	TID      uint32
	Op       string // EventDenied: the refused operation, e.g. "bpf_map"
	Count    uint64 // EventLost
	Boottime time.Duration
	// ParentCgroupID and Name: EventAutotag, the autotag parent and the
	// new cgroup's directory name, so user space can name it without a
	// walk of the cgroup tree.
	ParentCgroupID uint64
	Name           string
}

// Tracker is the kernel layer as the rest of contid sees it.
type Tracker interface {
	// Enforcement reports the mode and a reason a person can read.
	Enforcement() (contid.Mode, string)

	// AllocateID returns an ID never handed out before in this boot and
	// above the persisted high-water mark; the kernel's autotag draws from
	// the same sequence.
	AllocateID() (contid.ID, error)
	// ClaimID marks an explicit ID as used; ErrIDTaken if it already is.
	ClaimID(id contid.ID) error
	// SetFloor makes every later allocation larger than floor (the
	// high-water mark persisted across reboots).
	SetFloor(floor contid.ID) error
	// ReleaseID drops an ID's claim once a record that refuses it for good
	// has taken over; see BPF.ReleaseID.
	ReleaseID(id contid.ID) error

	// TagCgroup writes cgroup_tags first, then tags the tasks already in
	// the cgroup's subtree. It returns how many tasks it tagged.
	TagCgroup(cgroupID uint64, tag contid.Tag) (int, error)
	// UntagCgroup forgets a removed cgroup's entry.
	UntagCgroup(cgroupID uint64) error
	// CgroupTag reads cgroup_tags.
	CgroupTag(cgroupID uint64) (contid.Tag, error)
	// CgroupTags lists every tagged cgroup (startup reconciliation).
	CgroupTags() (map[uint64]contid.Tag, error)
	// SetAutotagParents replaces the set of cgroups whose new children
	// are tagged at mkdir.
	SetAutotagParents(cgroupIDs []uint64) error

	// TagProcess tags one process (all its threads) through its pidfd.
	TagProcess(pidfd int, tag contid.Tag) error
	// ProcessID reads a live process's ID from task storage.
	ProcessID(pidfd int) (contid.ID, error)
	// PIDID resolves a live PID (opens a pidfd internally).
	PIDID(pid uint32) (contid.ID, error)
	// Attribute resolves the ID a PID had at time at, for audit records
	// of processes that may have exited since; it never guesses across a
	// PID reuse. ppid is the parent the record names (0 if none). An
	// AmbiguousPID comes with the candidates it could not choose between.
	Attribute(pid, ppid uint32, at time.Time) (contid.ID, contid.Attribution, contid.Candidates, error)

	// ReadEvent blocks for the next ring buffer event.
	ReadEvent(ctx context.Context) (Event, error)

	// Close detaches nothing: pinned links keep working. It releases the
	// daemon's file descriptors only.
	Close() error
}
