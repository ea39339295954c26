// Package kernel is everything in contid that talks to the kernel: the
// eBPF programs and their pinned maps, the feature probe that picks
// enforcing or tracking mode, cgroup2 discovery and cgroup IDs.
//
// The layers above define the interfaces they need of it (registry.Kernel,
// dbus.Tracker, audit.Attributor), which *BPF satisfies, so they can be
// tested without root; only the daemon, which wires the layers, holds the
// *BPF itself.
package kernel

import (
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
	// EventGrantUsed: a guard let a tagged task do Op because its
	// container holds the exception (contid.FlagAllowBPF,
	// FlagAllowModules); the kernel sends it once per container and
	// exception.
	EventGrantUsed = EventKind(contidEventKindEV_GRANT_USED)
)

// Event is one record from the contid ring buffer.
type Event struct {
	Kind     EventKind
	Tag      contid.Tag // the ID applied, autotagged, or the denied task's
	CgroupID uint64
	PID      uint32 // tgid
	TID      uint32
	Op       string // EventDenied: the refused operation, e.g. "bpf_map"; EventGrantUsed: the one let through
	Count    uint64 // EventLost
	// Suppressed: EventDenied, the container's denials not recorded
	// one by one (over its budget) up to this one, a monotonic total.
	Suppressed uint64
	Boottime   time.Duration
	// ParentCgroupID and Name: EventAutotag, the autotag parent and the
	// new cgroup's directory name, so user space can name it without a
	// walk of the cgroup tree.
	ParentCgroupID uint64
	Name           string
}
