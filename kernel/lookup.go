package kernel

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/procstat"
)

// attributionSlack widens each [start, exit] window. Audit stamps records
// with the coarse realtime clock, truncated to milliseconds, so a record
// can read up to a jiffy (10 ms at HZ=100) plus 1 ms earlier than the
// event; converting between clocks adds a little more.
const attributionSlack = 20 * time.Millisecond

// clockLag bounds how far the coarse clock audit reads at syscall entry
// may lag behind the precise one pid_tags is stamped with. It moves on
// timer ticks, and where ticks come late (a loaded virtual machine) it
// was seen to read more than attributionSlack before the start of the
// process that made the call: its exec then matched no life of the PID
// and went unwritten. A stamp that early is still attributed to the
// current life when no earlier life could have made it: the previous
// one had exited before the stamp, and pid_tags records every life since
// contid loaded, so no third process held the PID in between.
const clockLag = time.Second

// ProcessID reads the ID of the live process behind pidfd.
func (b *BPF) ProcessID(pidfd int) (contid.ID, error) {
	var tt taskTag
	err := b.maps.TaskTags.Lookup(int32(pidfd), &tt)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		// The kernel answers ENOENT for a reaped process too.
		if serr := unix.PidfdSendSignal(pidfd, 0, nil, 0); errors.Is(serr, unix.ESRCH) {
			return contid.Unset, ErrNoProcess
		}
		return contid.Unset, ErrNotTagged
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF):
		return contid.Unset, ErrNoProcess
	case err != nil:
		return contid.Unset, fmt.Errorf("look up pidfd %d: %w", pidfd, err)
	case tt.Id == 0:
		return contid.Unset, ErrNotTagged
	}
	return contid.ID(tt.Id), nil
}

// PIDID resolves a live PID through a pidfd, so the answer is about the
// process that had the PID when the pidfd was opened.
func (b *BPF) PIDID(pid uint32) (contid.ID, error) {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if errors.Is(err, unix.ESRCH) {
		return contid.Unset, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return contid.Unset, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	id, err := b.ProcessID(fd)
	if err != nil {
		return contid.Unset, fmt.Errorf("pid %d: %w", pid, err)
	}
	return id, nil
}

// Attribute resolves the ID a PID had at time at from pid_tags, which
// outlives the process. For an AmbiguousPID it also names the candidates.
func (b *BPF) Attribute(pid, ppid uint32, at time.Time) (contid.ID, contid.Attribution, contid.Candidates, error) {
	var none contid.Candidates
	t, err := realtimeToBoottime(at)
	if err != nil {
		return contid.Unset, contid.Unattributed, none, err
	}
	var pt pidTag
	err = b.maps.PidTags.Lookup(pid, &pt)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		if id := b.attributeLive(pid, t); id != contid.Unset {
			return id, contid.LiveProcess, none, nil
		}
		return contid.Unset, contid.Unattributed, none, nil
	}
	if err != nil {
		return contid.Unset, contid.Unattributed, none, fmt.Errorf("look up pid %d: %w", pid, err)
	}
	var parent *pidTag
	if _, _, _, early := attribute(pt, t, attributionSlack); early && ppid != 0 {
		var ppt pidTag
		if err := b.maps.PidTags.Lookup(ppid, &ppt); err == nil {
			parent = &ppt
		}
	}
	id, how, cands := resolve(pt, parent, t, attributionSlack)
	return id, how, cands, nil
}

// userTick is the unit of a start time in /proc/PID/stat (USER_HZ).
const userTick = 10 * time.Millisecond

// attributeLive answers for a PID of which pid_tags holds no record. The
// map is an LRU: a container that forks tens of thousands of short
// processes evicts the records of processes that live on, its own and
// other containers', whose events would then go unattributed, unwritten.
// A live process that started before the event held the PID then, so
// the event is its own, and its ID is read from task_tags. It answers
// contid.Unset (the caller reports that as unattributed) otherwise.
func (b *BPF) attributeLive(pid uint32, t int64) contid.ID {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return contid.Unset
	}
	defer unix.Close(fd)
	id, err := b.ProcessID(fd)
	if err != nil || id == contid.Unset {
		return contid.Unset
	}
	ticks, err := procstat.StartTicks(int(pid))
	// Still alive after the read: the start time was the pidfd's process.
	if err != nil || unix.PidfdSendSignal(fd, 0, nil, 0) != nil {
		return contid.Unset
	}
	// The start time is truncated to a tick; the audit stamp may lag.
	if started := int64(ticks+1) * int64(userTick); t <= started+int64(attributionSlack) {
		return contid.Unset
	}
	return id
}

// realtimeToBoottime converts a wall-clock time to CLOCK_BOOTTIME
// nanoseconds with the current offset between the two clocks.
func realtimeToBoottime(at time.Time) (int64, error) {
	var rt, bt unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &rt); err != nil {
		return 0, fmt.Errorf("read realtime clock: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &bt); err != nil {
		return 0, fmt.Errorf("read boottime clock: %w", err)
	}
	offset := rt.Nano() - bt.Nano()
	return at.UnixNano() - offset, nil
}

// attribute matches boottime t against the two records of a PID. A
// record covers [start-slack, exit+slack] (open-ended while alive). If
// both records cover t with different IDs, the PID was reused too close
// to t to tell the processes apart: nothing is attributed, and the IDs of
// both lives (those that are tagged) are the candidates.
//
// early says the stamp fell before the current life's start by more than
// slack (clockLag): resolve then wants the parent to vouch for it.
func attribute(pt pidTag, t int64, slack time.Duration) (id contid.ID, how contid.Attribution, cands contid.Candidates, early bool) {
	covers := func(r pidRecord) bool {
		if r.StartNs == 0 {
			return false
		}
		if t < int64(r.StartNs)-int64(slack) {
			return false
		}
		return r.ExitNs == 0 || t <= int64(r.ExitNs)+int64(slack)
	}
	cur, prev := covers(pt.Cur), covers(pt.Prev)
	if !cur && !prev && pt.Cur.StartNs != 0 && t < int64(pt.Cur.StartNs) && t >= int64(pt.Cur.StartNs)-int64(clockLag) &&
		(pt.Prev.StartNs == 0 || (pt.Prev.ExitNs != 0 && t > int64(pt.Prev.ExitNs)+int64(slack))) {
		cur, early = true, true
	}
	var r pidRecord
	switch {
	case cur && prev && pt.Cur.Id != pt.Prev.Id:
		// An untagged life (ID 0) is no candidate: the entry says the
		// call was the tagged one's or a process's in no container.
		n := 0
		for _, id := range [2]uint64{pt.Prev.Id, pt.Cur.Id} {
			if id != 0 {
				cands[n] = contid.ID(id)
				n++
			}
		}
		return contid.Unset, contid.AmbiguousPID, cands, early
	case cur:
		r = pt.Cur
	case prev:
		r = pt.Prev
	case pt.Prev.StartNs != 0 && t < int64(pt.Prev.StartNs)-int64(slack):
		// Older than both lives on record: the PID has been taken
		// twice since, and whose call it was is lost with the
		// record that rotated out. Neither recorded life is a
		// candidate; the event is still not passed off as an
		// untagged process's.
		return contid.Unset, contid.AmbiguousPID, cands, early
	default:
		return contid.Unset, contid.Unattributed, cands, early
	}
	if r.Id == 0 {
		return contid.Unset, contid.Unattributed, cands, early
	}
	if r.ExitNs == 0 {
		return contid.ID(r.Id), contid.LiveProcess, cands, early
	}
	return contid.ID(r.Id), contid.ExitedProcess, cands, early
}

// resolve is attribute, with one more condition on an early stamp. A PID
// on which contid recorded no earlier life may have been held, just
// before, by an untagged process (its life is recorded only where the PID
// already has a record): an early stamp could be that process's call. It
// goes to the current life only when the event's parent was in a
// container at that time: an untagged process has no tagged parent, since
// a tagged parent's children inherit its ID. (Not necessarily the same
// ID: a nested container's first process is the child of its parent
// container's.)
func resolve(pt pidTag, parent *pidTag, t int64, slack time.Duration) (contid.ID, contid.Attribution, contid.Candidates) {
	id, how, cands, early := attribute(pt, t, slack)
	if !early || id == contid.Unset {
		return id, how, cands
	}
	var none contid.Candidates
	if parent == nil {
		return contid.Unset, contid.Unattributed, none
	}
	pid, phow, _, pearly := attribute(*parent, t, slack)
	if pearly || pid == contid.Unset || (phow != contid.LiveProcess && phow != contid.ExitedProcess) {
		return contid.Unset, contid.Unattributed, none
	}
	return id, how, cands
}
