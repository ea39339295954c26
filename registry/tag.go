package registry

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/contid/contid"
)

// allocateAttempts bounds retries when the kernel hands out an ID the
// registry already knows (its floor was lost); each retry raises the floor.
const allocateAttempts = 3

// TagCgroup gives a cgroup an audit container ID: a new one (id Unset), an
// explicit new one, or, for the ID's living owner, an ID it already holds
// (a pod; the further cgroup takes the container's chain and flags, and the
// call's options are ignored). Repeating an identical call returns the
// existing record. Cgroups the kernel autotagged have no owner: they are
// named with SetMetadata, and TagCgroup on them is AlreadyTagged.
func (r *Registry) TagCgroup(c Caller, id contid.ID, t CgroupTarget, o Options) (*Container, error) {
	if err := checkRequest(c, id, o); err != nil {
		return nil, err
	}
	if err := ValidateCgroupPath(t.Path); err != nil {
		return nil, err
	}
	if t.ID == 0 {
		return nil, fmt.Errorf("%w: cgroup %s has no cgroup id", contid.ErrInvalidArgs, t.Path)
	}
	if err := ValidateName(t.Unit); err != nil {
		return nil, fmt.Errorf("unit: %w", err)
	}
	if err := neverTaggable(t.Path, r.cfg.OwnCgroup); err != nil {
		return nil, err
	}
	// Nobody may tag the cgroup it runs in or one above it: that would
	// tag the caller itself.
	if within(c.Cgroup, t.Path) {
		return nil, fmt.Errorf("%w: cgroup %s contains the caller's own cgroup %s", contid.ErrNotDescendant, t.Path, c.Cgroup)
	}

	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil, ErrClosed
	}

	e := r.paths[t.Path]
	if e != nil && !hasCgroupID(e, t.Path, t.ID) {
		// Same path, another cgroup id: the recorded cgroup was removed
		// and recreated (a machine restarted) without us hearing of it.
		if err := r.exit(e); err != nil {
			return nil, err
		}
		e = nil
	}
	if e == nil {
		e = r.cgIDs[t.ID]
	}
	if e != nil {
		if r.isRepeat(e, c, id, o) {
			return e.c.clone(), nil
		}
		return nil, fmt.Errorf("%w: cgroup %s is container %d", contid.ErrAlreadyTagged, t.Path, e.c.ID)
	}
	if n := r.below[t.Path]; n > 0 {
		return nil, fmt.Errorf("%w: cgroup %s contains the cgroups of %d tagged containers", contid.ErrAlreadyTagged, t.Path, n)
	}
	parent, err := r.nestingParent(c, t.Path, "cgroup "+t.Path)
	if err != nil {
		return nil, err
	}
	if err := r.checkGrants(c, o); err != nil {
		return nil, err
	}
	cg := Cgroup{Path: t.Path, ID: t.ID}

	if pod, err := r.podOf(c, id, parent, "cgroup "+t.Path); err != nil || pod != nil {
		if err != nil {
			return nil, err
		}
		n, err := r.k.TagCgroup(t.ID, contid.Tag{Chain: pod.c.Chain, Flags: pod.c.Flags})
		if err != nil {
			return nil, fmt.Errorf("tag cgroup %s as container %d in the kernel: %w", t.Path, pod.c.ID, err)
		}
		ne := pod.dup()
		ne.c.Cgroups = append(ne.c.Cgroups, cg)
		ne.c.HeldProcesses = ne.c.HeldProcesses || n > 0
		return r.commit(pod, ne)
	}

	if err := r.checkLimits(parent); err != nil {
		return nil, err
	}
	if err := r.checkUUID(o.UUID); err != nil {
		return nil, err
	}
	id, err = r.takeID(id)
	if err != nil {
		return nil, err
	}
	ne := r.newEntry(c, id, parent, o)
	ne.c.Unit = t.Unit
	ne.c.Cgroups = []Cgroup{cg}
	n, err := r.k.TagCgroup(t.ID, contid.Tag{Chain: ne.c.Chain, Flags: ne.c.Flags})
	if err != nil {
		return nil, r.burn(id, fmt.Errorf("tag cgroup %s as container %d in the kernel: %w", t.Path, id, err))
	}
	ne.c.HeldProcesses = n > 0
	return r.commit(nil, ne)
}

// TagProcess gives one fresh process an audit container ID, with the same
// ID rules as TagCgroup. The D-Bus layer has checked that the process is
// fresh (contid.ErrNotFresh) and pinned it by pidfd.
func (r *Registry) TagProcess(c Caller, id contid.ID, t ProcessTarget, o Options) (*Container, error) {
	if err := checkRequest(c, id, o); err != nil {
		return nil, err
	}
	if t.PID == 0 {
		return nil, fmt.Errorf("%w: PID 0", contid.ErrInvalidArgs)
	}
	if t.PIDFD < 0 {
		return nil, fmt.Errorf("%w: no pidfd for process %d", contid.ErrInvalidArgs, t.PID)
	}
	if err := ValidateCgroupPath(t.Cgroup); err != nil {
		return nil, fmt.Errorf("cgroup of process %d: %w", t.PID, err)
	}
	if t.PID == c.PID {
		return nil, fmt.Errorf("%w: process %d cannot tag itself", contid.ErrNotDescendant, t.PID)
	}
	if own := r.cfg.OwnCgroup; own != "" && t.Cgroup == own {
		return nil, fmt.Errorf("%w: process %d runs in contidd's own cgroup %s and is never tagged", contid.ErrInvalidArgs, t.PID, own)
	}
	if c.Container != contid.Unset && !t.ChildOfCaller {
		return nil, fmt.Errorf("%w: process %d is not a child of the caller, and a caller in container %d may tag only its own children", contid.ErrNotDescendant, t.PID, c.Container)
	}

	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil, ErrClosed
	}

	key := procKey{t.PID, t.Start}
	if e := r.procs[key]; e != nil {
		if r.isRepeat(e, c, id, o) {
			return e.c.clone(), nil
		}
		return nil, fmt.Errorf("%w: process %d is container %d", contid.ErrAlreadyTagged, t.PID, e.c.ID)
	}
	// A process in a tagged cgroup already carries that cgroup's ID, so
	// the same nesting rules apply as for a cgroup below it.
	what := fmt.Sprintf("process %d (cgroup %s)", t.PID, t.Cgroup)
	parent, err := r.nestingParent(c, t.Cgroup, what)
	if err != nil {
		return nil, err
	}
	if err := r.checkGrants(c, o); err != nil {
		return nil, err
	}

	if pod, err := r.podOf(c, id, parent, what); err != nil || pod != nil {
		if err != nil {
			return nil, err
		}
		if err := r.k.TagProcess(t.PIDFD, contid.Tag{Chain: pod.c.Chain, Flags: pod.c.Flags}); err != nil {
			return nil, fmt.Errorf("tag process %d as container %d in the kernel: %w", t.PID, pod.c.ID, err)
		}
		ne := pod.dup()
		ne.c.PIDs = append(ne.c.PIDs, t.PID)
		ne.starts = append(ne.starts, t.Start)
		return r.commit(pod, ne)
	}

	if err := r.checkLimits(parent); err != nil {
		return nil, err
	}
	if err := r.checkUUID(o.UUID); err != nil {
		return nil, err
	}
	id, err = r.takeID(id)
	if err != nil {
		return nil, err
	}
	ne := r.newEntry(c, id, parent, o)
	ne.c.PIDs = []uint32{t.PID}
	ne.starts = []uint64{t.Start}
	if err := r.k.TagProcess(t.PIDFD, contid.Tag{Chain: ne.c.Chain, Flags: ne.c.Flags}); err != nil {
		return nil, r.burn(id, fmt.Errorf("tag process %d as container %d in the kernel: %w", t.PID, id, err))
	}
	return r.commit(nil, ne)
}

// Adopt records an ID the kernel assigned on its own (autotag at mkdir, or
// found in cgroup_tags at startup). The bool says whether a new container
// was recorded; adopting a known ID and cgroup again changes nothing.
func (r *Registry) Adopt(tag contid.Tag, cg Cgroup) (*Container, bool, error) {
	id := tag.ID()
	if id == contid.Unset || id == contid.Invalid {
		return nil, false, fmt.Errorf("%w: kernel tag without a valid ID (%s)", contid.ErrInvalidArgs, tag.Chain)
	}
	if len(tag.Chain) > contid.MaxDepth {
		return nil, false, fmt.Errorf("%w: kernel tag %s is deeper than %d", contid.ErrInvalidArgs, tag.Chain, contid.MaxDepth)
	}
	for _, x := range tag.Chain {
		if x == contid.Unset || x == contid.Invalid {
			return nil, false, fmt.Errorf("%w: kernel tag %s holds an invalid ID", contid.ErrInvalidArgs, tag.Chain)
		}
	}
	// An empty path is allowed: the cgroup may be gone before its path
	// was resolved, and the ID must still raise the high-water mark.
	if cg.Path != "" {
		if err := ValidateCgroupPath(cg.Path); err != nil {
			r.sealUnrecorded(id)
			return nil, false, err
		}
	}

	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil, false, ErrClosed
	}

	if e := r.paths[cg.Path]; cg.Path != "" && e != nil && e.c.ID != id {
		if hasCgroupID(e, cg.Path, cg.ID) {
			return nil, false, fmt.Errorf("%w: the kernel reports cgroup %s as container %d, the registry has it as %d", contid.ErrAlreadyTagged, cg.Path, id, e.c.ID)
		}
		if err := r.exit(e); err != nil {
			return nil, false, err
		}
	}
	if e := r.cgIDs[cg.ID]; cg.ID != 0 && e != nil && e.c.ID != id {
		return nil, false, fmt.Errorf("%w: the kernel reports cgroup id %d as container %d, the registry has it as %d", contid.ErrAlreadyTagged, cg.ID, id, e.c.ID)
	}

	if old := r.byID[id]; old != nil {
		if !slices.Equal(old.c.Chain, tag.Chain) {
			return nil, false, fmt.Errorf("%w: the kernel reports container %d with chain %s, the registry has %s", contid.ErrIDInUse, id, tag.Chain, old.c.Chain)
		}
		if slices.ContainsFunc(old.c.Cgroups, func(x Cgroup) bool { return x == cg }) || (cg == Cgroup{}) {
			return old.c.clone(), false, nil
		}
		ne := old.dup()
		ne.c.Cgroups = append(ne.c.Cgroups, cg)
		c, err := r.commit(old, ne)
		return c, false, err
	}

	r.keepAllocationAbove(slices.Max(tag.Chain))
	// The kernel handed the ID out already; the lease can only follow, as
	// soon as the registry hears of it.
	lerr := r.lease(slices.Max(tag.Chain))
	ne := &entry{c: Container{
		ID:      id,
		Chain:   slices.Clone(tag.Chain),
		Flags:   tag.Flags,
		UUID:    NewUUID(),
		State:   StateActive,
		Created: r.now(),
	}}
	if cg != (Cgroup{}) {
		ne.c.Cgroups = []Cgroup{cg}
	}
	c, err := r.commit(nil, ne)
	if err == nil && lerr != nil {
		return nil, false, fmt.Errorf("container %d is in effect but its ID could not be reserved across a reboot: %w", id, lerr)
	}
	return c, err == nil, err
}

// sealUnrecorded keeps an ID the kernel handed out to a cgroup the
// registry refuses to record (its path holds a noncharacter, or is not
// UTF-8) from being handed out again: the cgroup's processes carry it and
// their events are journaled under it. Like a pruned ID, it is raised
// into the high-water mark and sealed, and the journal's prune line
// carries that to the next Open, also after a reboot, when the kernel's
// allocator starts again from the high-water mark. One line per ID: a
// sealed ID is not written again, so each start's adoption of the
// kernel's tags adds nothing.
func (r *Registry) sealUnrecorded(id contid.ID) {
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed || id <= r.sealed || r.byID[id] != nil || r.retired[id] {
		return
	}
	if err := r.lease(id); err != nil {
		r.warn("ID %d of a cgroup that is not recorded could not be reserved across a reboot: %v", id, err)
	}
	if err := r.st.prune(&entry{c: Container{ID: id}}); err != nil {
		r.warn("ID %d of a cgroup that is not recorded could not be sealed: %v", id, err)
		return
	}
	r.mu.Lock()
	r.raise(id)
	r.sealed = max(r.sealed, id)
	r.mu.Unlock()
}

// SetMetadata names a container, typically when machined announces the
// machine whose cgroup the kernel autotagged.
func (r *Registry) SetMetadata(id contid.ID, name, unit string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateName(unit); err != nil {
		return fmt.Errorf("unit: %w", err)
	}
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.byID[id]
	if old == nil {
		return fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
	}
	if old.c.Name == name && old.c.Unit == unit {
		return nil
	}
	ne := old.dup()
	ne.c.Name, ne.c.Unit = name, unit
	_, err := r.commit(old, ne)
	return err
}

// SetUnitIfUnset records unit as the container's unit when it has none,
// and leaves every other field as it is: whether it did is the bool. The
// adoption of an autotagged cgroup and a manager's hook naming the same
// container can run at once, and the adoption must not write back a name
// it read before the hook gave one.
func (r *Registry) SetUnitIfUnset(id contid.ID, unit string) (bool, error) {
	if err := ValidateName(unit); err != nil {
		return false, fmt.Errorf("unit: %w", err)
	}
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return false, ErrClosed
	}
	old := r.byID[id]
	if old == nil {
		return false, fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
	}
	if old.c.Unit != "" || unit == "" {
		return false, nil
	}
	ne := old.dup()
	ne.c.Unit = unit
	if _, err := r.commit(old, ne); err != nil {
		return false, err
	}
	return true, nil
}

// NoteHeldProcesses records that a cgroup of active container id was
// seen holding processes where the kernel's walk found none (processes
// that came after the tag or were moved in while it ran, or that sit
// deeper below the cgroup than the walk looks): saved, so a contidd
// restarted after they ended still reads the empty cgroup as the exit.
// It writes once per container; later calls find it set.
func (r *Registry) NoteHeldProcesses(id contid.ID) error {
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.byID[id]
	if old == nil {
		return fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
	}
	if old.c.HeldProcesses || old.c.State != StateActive {
		return nil
	}
	ne := old.dup()
	ne.c.HeldProcesses = true
	if _, err := r.commit(old, ne); err != nil {
		return fmt.Errorf("note that container %d held processes: %w", id, err)
	}
	return nil
}

// Name gives a container the kernel tagged on its own (autotag: it has no
// owner) its name, unit and what started it (o's Name, Manager, Image and
// ManagerID; its flags do not apply), for a caller that may manage it
// (mayManage). A UUID in o must be the one it got at creation. Each of them, once given, stays: another value is
// AlreadyTagged, so whoever named it first cannot be overruled. An empty
// one keeps what is recorded.
func (r *Registry) Name(c Caller, id contid.ID, o Options, unit string) (*Container, error) {
	if err := o.validateLabels(); err != nil {
		return nil, err
	}
	if err := ValidateName(unit); err != nil {
		return nil, fmt.Errorf("unit: %w", err)
	}
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	e := r.byID[id]
	switch {
	case e == nil:
		return nil, fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
	case e.c.State != StateActive:
		return nil, fmt.Errorf("%w: container %d exited", contid.ErrIDInUse, id)
	case e.c.OwnerPID != 0:
		return nil, fmt.Errorf("%w: container %d has an owner, who gave it its name", contid.ErrAlreadyTagged, id)
	}
	if err := r.mayManage(c, e); err != nil {
		return nil, err
	}
	if !sameOrUnset(o.UUID, e.c.UUID) {
		// Its UUID was drawn when the kernel tagged it and is already in
		// its journal entries: another one would split its history.
		return nil, fmt.Errorf("%w: container %d was tagged by the kernel at creation and has UUID %s already", contid.ErrAlreadyTagged, id, e.c.UUID)
	}
	for _, cg := range e.c.Cgroups {
		if within(c.Cgroup, cg.Path) {
			return nil, fmt.Errorf("%w: cgroup %s contains the caller's own cgroup %s", contid.ErrNotDescendant, cg.Path, c.Cgroup)
		}
	}
	ne := e.dup()
	for _, f := range []struct {
		what      string
		rec       *string
		requested string
	}{
		{"named", &ne.c.Name, o.Name},
		{"managed by", &ne.c.Manager, o.Manager},
		{"running image", &ne.c.Image, o.Image},
		{"known to its manager as", &ne.c.ManagerID, o.ManagerID},
	} {
		if !sameOrUnset(f.requested, *f.rec) && *f.rec != "" {
			return nil, fmt.Errorf("%w: container %d is already %s %q", contid.ErrAlreadyTagged, id, f.what, Truncate(*f.rec))
		}
		if f.requested != "" {
			*f.rec = f.requested
		}
	}
	if ne.c.Unit == "" {
		ne.c.Unit = unit
	}
	if ne.c.Name == e.c.Name && ne.c.Unit == e.c.Unit && ne.c.Manager == e.c.Manager &&
		ne.c.Image == e.c.Image && ne.c.ManagerID == e.c.ManagerID {
		return e.c.clone(), nil
	}
	return r.commit(e, ne)
}

// sameOrUnset: a requested value matches a recorded one, or asks for
// nothing in particular.
func sameOrUnset(requested, recorded string) bool {
	return requested == "" || requested == recorded
}

// MarkExited records that a container's cgroup emptied or was removed. The
// record stays, and so does its claim on the ID.
func (r *Registry) MarkExited(id contid.ID) (*Container, error) {
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	e := r.byID[id]
	if e == nil {
		return nil, fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
	}
	if e.c.State == StateExited {
		return e.c.clone(), nil
	}
	if err := r.exit(e); err != nil {
		return nil, err
	}
	return r.byID[id].c.clone(), nil
}

// checkRequest is the part of every tag request that needs no state.
func checkRequest(c Caller, id contid.ID, o Options) error {
	if !c.Privileged {
		return fmt.Errorf("%w: tagging needs UID 0 or polkit authorization for org.contid1.tag", contid.ErrAccessDenied)
	}
	if id == contid.Invalid {
		return fmt.Errorf("%w: %d is not a valid audit container ID", contid.ErrInvalidArgs, uint64(id))
	}
	if err := o.validateLabels(); err != nil {
		return err
	}
	// Without the caller's cgroup, self-tagging cannot be ruled out.
	if err := ValidateCgroupPath(c.Cgroup); err != nil {
		return fmt.Errorf("%w: the caller's cgroup is unknown: %v", contid.ErrAccessDenied, err)
	}
	return nil
}

// nestingParent decides under which container a new ID at cgroup path
// goes, or why it may not go there at all.
func (r *Registry) nestingParent(c Caller, path, what string) (*entry, error) {
	parent := r.enclosing(path)
	if c.Container != contid.Unset {
		x := r.byID[c.Container]
		if x == nil || x.c.State != StateActive {
			return nil, fmt.Errorf("%w: the caller's container %d is not an active container", contid.ErrNotDescendant, c.Container)
		}
		if parent == nil || !parent.c.Chain.Within(x.c.ID) {
			return nil, fmt.Errorf("%w: %s is outside the caller's container %d", contid.ErrNotDescendant, what, x.c.ID)
		}
		if x.c.Flags&contid.FlagAllowNesting == 0 {
			return nil, fmt.Errorf("%w: container %d was not created with AllowNesting", contid.ErrAccessDenied, x.c.ID)
		}
	}
	if parent != nil && parent.c.Flags&contid.FlagAllowNesting == 0 {
		return nil, fmt.Errorf("%w: %s belongs to container %d, which does not allow nesting", contid.ErrAlreadyTagged, what, parent.c.ID)
	}
	return parent, nil
}

// checkGrants refuses a caller inside a container the exceptions to
// enforcing mode (contid.FlagsGrants) its own container does not hold:
// an orchestrator that may not load BPF programs must not make a child
// that may, and load them through it. Its own container is the
// innermost, whose tag the kernel's guards read for its tasks.
func (r *Registry) checkGrants(c Caller, o Options) error {
	want := o.flags() & contid.FlagsGrants
	if want == 0 || c.Container == contid.Unset {
		return nil
	}
	var have contid.Flags
	if x := r.byID[c.Container]; x != nil && x.c.State == StateActive {
		have = x.c.Flags
	}
	missing := want &^ have
	for _, g := range []struct {
		flag contid.Flags
		name string
	}{{contid.FlagAllowBPF, "AllowBPF"}, {contid.FlagAllowModules, "AllowModules"}} {
		if missing&g.flag != 0 {
			return fmt.Errorf("%w: the caller's container %d was not tagged with %s, so it cannot grant it", contid.ErrAccessDenied, c.Container, g.name)
		}
	}
	return nil
}

// podOf returns the recorded container when the caller asks for an
// explicit ID that already exists, after checking the caller may share it;
// nil when the ID is new or to be allocated.
func (r *Registry) podOf(c Caller, id contid.ID, parent *entry, what string) (*entry, error) {
	if id == contid.Unset {
		return nil, nil
	}
	e := r.byID[id]
	if e == nil {
		return nil, nil
	}
	if e.c.State != StateActive {
		return nil, fmt.Errorf("%w: container %d exited; its ID is never reused", contid.ErrIDInUse, id)
	}
	if !r.isOwner(e, c) {
		return nil, fmt.Errorf("%w: container %d belongs to another process", contid.ErrIDInUse, id)
	}
	want := contid.Unset
	if parent != nil {
		want = parent.c.ID
	}
	if e.c.Parent() != want {
		return nil, fmt.Errorf("%w: %s is nested in container %d, but container %d is nested in %d", contid.ErrNotDescendant, what, want, id, e.c.Parent())
	}
	return e, nil
}

func (r *Registry) checkLimits(parent *entry) error {
	depth := 1
	if parent != nil {
		depth += len(parent.c.Chain)
	}
	if depth > r.cfg.MaxDepth {
		return fmt.Errorf("%w: nesting depth %d exceeds the limit of %d", contid.ErrLimitExceeded, depth, r.cfg.MaxDepth)
	}
	if r.active >= r.cfg.MaxContainers {
		return fmt.Errorf("%w: %d containers are active, the limit is %d", contid.ErrLimitExceeded, r.active, r.cfg.MaxContainers)
	}
	return nil
}

// checkUUID refuses a caller's UUID that an active container holds. An
// exited container's UUID may be given again: an orchestrator that
// recreates a pod's sandbox brings the same pod UID, and the records
// tell the two lives apart by ID and time. A UUID drawn at random needs
// no check: 122 random bits do not repeat.
func (r *Registry) checkUUID(uuid string) error {
	if uuid == "" {
		return nil
	}
	if e := r.uuids[uuid]; e != nil {
		return fmt.Errorf("%w: UUID %s is container %d's", contid.ErrUUIDInUse, uuid, e.c.ID)
	}
	return nil
}

// takeID allocates a fresh ID or claims an explicit one that no record
// holds.
func (r *Registry) takeID(id contid.ID) (contid.ID, error) {
	if id != contid.Unset {
		if r.retired[id] {
			return 0, fmt.Errorf("%w: ID %d was taken before and is never reused", contid.ErrIDInUse, id)
		}
		if id <= r.sealed {
			return 0, fmt.Errorf("%w: ID %d may have been handed out before a crash lost its record, and is never reused", contid.ErrIDInUse, id)
		}
		if err := r.k.ClaimID(id); err != nil {
			if errors.Is(err, contid.ErrIDTaken) {
				return 0, fmt.Errorf("%w: ID %d was already claimed in this boot: %v", contid.ErrIDInUse, id, err)
			}
			return 0, fmt.Errorf("claim ID %d in the kernel: %w", id, err)
		}
		// Claimed but not leased, the ID is only held in this boot: not
		// handed out, it needs no burning.
		if err := r.lease(id); err != nil {
			return 0, err
		}
		r.keepAllocationAbove(id)
		return id, nil
	}
	for range allocateAttempts {
		id, err := r.k.AllocateID()
		if err != nil {
			return 0, fmt.Errorf("allocate an ID in the kernel: %w", err)
		}
		if id == contid.Unset || id == contid.Invalid {
			return 0, fmt.Errorf("the kernel allocated the invalid ID %d", uint64(id))
		}
		if r.byID[id] == nil && !r.retired[id] && id > r.sealed {
			if err := r.lease(id); err != nil {
				return 0, err
			}
			return id, nil
		}
		// The kernel's sequence fell behind ours; never hand the ID out
		// twice, move the floor and try again.
		r.warn("the kernel allocated ID %d, which was already used; raising its floor to %d", id, r.hwm)
		if err := r.k.SetFloor(r.hwm); err != nil {
			return 0, fmt.Errorf("raise the kernel's ID floor to %d: %w", r.hwm, err)
		}
	}
	return 0, fmt.Errorf("the kernel keeps allocating IDs that were already used (high-water mark %d)", r.hwm)
}

// lease makes sure id is covered by a synced lease before it is handed out,
// so it stays reserved across a power loss that takes its record. A new
// lease reaches a block past both id and the high-water mark: the
// allocator's next IDs, and explicit ones below the mark, need no sync.
func (r *Registry) lease(id contid.ID) error {
	if id <= r.st.lease {
		return nil
	}
	to := contid.Invalid - 1
	if base := max(id, r.hwm); base < to-leaseBlock {
		to = base + leaseBlock
	}
	if err := r.st.extendLease(to); err != nil {
		return fmt.Errorf("reserve IDs up to %d in the state directory: %w", to, err)
	}
	return nil
}

// keepAllocationAbove makes later allocations in this boot larger than an
// ID that did not come from the allocator (explicit or adopted), so IDs
// handed out keep increasing as they will after the next Open.
func (r *Registry) keepAllocationAbove(id contid.ID) {
	if id <= r.hwm {
		return
	}
	if err := r.k.SetFloor(id); err != nil {
		r.warn("raise the kernel's ID floor to %d: %v", id, err)
	}
}

// burn remembers an ID that was allocated or claimed but never recorded,
// so it is not given out again, and returns cause.
func (r *Registry) burn(id contid.ID, cause error) error {
	if err := r.st.retire(id); err != nil {
		r.warn("ID %d was burnt but could not be saved: %v", id, err)
	}
	r.mu.Lock()
	r.retired[id] = true
	r.raise(id)
	r.mu.Unlock()
	return cause
}

func (r *Registry) newEntry(c Caller, id contid.ID, parent *entry, o Options) *entry {
	uuid := o.UUID
	if uuid == "" {
		uuid = NewUUID()
	}
	chain := contid.Chain{id}
	if parent != nil {
		chain = append(chain, parent.c.Chain...)
	}
	return &entry{c: Container{
		ID:         id,
		Chain:      chain,
		Flags:      o.flags(),
		Name:       o.Name,
		Manager:    o.Manager,
		Image:      o.Image,
		ManagerID:  o.ManagerID,
		UUID:       uuid,
		State:      StateActive,
		Created:    r.now(),
		OwnerUID:   c.UID,
		OwnerPID:   c.PID,
		OwnerStart: c.Start,
	}}
}

// isOwner: the caller created the ID and is still that same living process.
func (r *Registry) isOwner(e *entry, c Caller) bool {
	if e.c.OwnerPID == 0 || e.c.OwnerPID != c.PID || e.c.OwnerStart != c.Start {
		return false
	}
	return r.cfg.OwnerAlive != nil && r.cfg.OwnerAlive(e.c.OwnerPID, e.c.OwnerStart)
}

// isRepeat: the owner retries a call that already succeeded (its reply may
// have been lost), with the same ID (or Unset) and the same options.
func (r *Registry) isRepeat(e *entry, c Caller, id contid.ID, o Options) bool {
	if id != contid.Unset && id != e.c.ID {
		return false
	}
	if e.c.State != StateActive || !r.isOwner(e, c) {
		return false
	}
	if !sameOrUnset(o.Name, e.c.Name) || !sameOrUnset(o.Manager, e.c.Manager) ||
		!sameOrUnset(o.Image, e.c.Image) || !sameOrUnset(o.ManagerID, e.c.ManagerID) ||
		!sameOrUnset(o.UUID, e.c.UUID) {
		return false
	}
	return e.c.Flags&^contid.FlagAutotag == o.flags()
}

func hasCgroupID(e *entry, path string, id uint64) bool {
	for _, cg := range e.c.Cgroups {
		if cg.Path == path {
			return cg.ID == id || cg.ID == 0 || id == 0
		}
	}
	return false
}

// exit marks e exited and stops indexing its cgroups and processes.
func (r *Registry) exit(e *entry) error {
	ne := e.dup()
	ne.c.State = StateExited
	ne.c.Exited = r.now()
	if _, err := r.commit(e, ne); err != nil {
		return err
	}
	r.exitOrder = append(r.exitOrder, ne.c.ID)
	if err := r.pruneExited(); err != nil {
		// The records stay; pruning is retried at the next exit.
		r.warn("pruning exited records failed: %v", err)
	}
	return nil
}

func (r *Registry) now() time.Time {
	// Stored as Unix nanoseconds in UTC; normalise now so that a record
	// reads back identical after a reopen.
	return r.cfg.Now().Round(0).UTC()
}

func (e *entry) dup() *entry {
	return &entry{c: *e.c.clone(), starts: slices.Clone(e.starts), lineLen: e.lineLen}
}

// commit persists ne, then publishes it in place of old (nil for a new
// record). A record that reached the kernel but not the disk is still
// published, so lookups match the kernel; the error says it was not saved.
func (r *Registry) commit(old, ne *entry) (*Container, error) {
	serr := r.st.put(old, ne)
	r.mu.Lock()
	if old != nil {
		r.unindex(old)
	}
	r.byID[ne.c.ID] = ne
	r.index(ne)
	for _, x := range ne.c.Chain {
		r.raise(x)
	}
	r.mu.Unlock()
	if serr != nil {
		return nil, fmt.Errorf("container %d is in effect but could not be saved: %w", ne.c.ID, serr)
	}
	if err := r.st.maybeCompact(r); err != nil {
		// The journal still holds everything; compaction is retried on
		// the next change.
		r.warn("compacting the state directory failed: %v", err)
	}
	return ne.c.clone(), nil
}

func (r *Registry) raise(id contid.ID) {
	if id > r.hwm {
		r.hwm = id
	}
}

// index adds an active entry's cgroups and processes to the lookup maps,
// or an exited entry's cgroups to the exited ones.
func (r *Registry) index(e *entry) {
	if e.c.State != StateActive {
		r.indexExited(e)
		return
	}
	r.active++
	for _, cg := range e.c.Cgroups {
		// A path held by another record (only possible in damaged state
		// files) stays with the first; below counts each path once.
		if cg.Path != "" && r.paths[cg.Path] == nil {
			r.paths[cg.Path] = e
			for p := cg.Path; p != "/"; {
				p = parentPath(p)
				r.below[p]++
			}
		}
		if cg.ID != 0 && r.cgIDs[cg.ID] == nil {
			r.cgIDs[cg.ID] = e
		}
	}
	for i, pid := range e.c.PIDs {
		r.procs[procKey{pid, e.starts[i]}] = e
	}
	// Like a path, a UUID two records claim (damaged state files) stays
	// with the first.
	if e.c.UUID != "" && r.uuids[e.c.UUID] == nil {
		r.uuids[e.c.UUID] = e
	}
}

// indexExited keeps, per cgroup path and id, the exited record with the
// highest ID. An exited record is never unindexed: records are never
// deleted, a later version of one keeps its ID and cgroups (they are only
// ever appended to), so it simply takes its own place here (>=).
func (r *Registry) indexExited(e *entry) {
	for _, cg := range e.c.Cgroups {
		if cg.Path != "" {
			if cur := r.exitedPaths[cg.Path]; cur == nil || cur.c.ID <= e.c.ID {
				r.exitedPaths[cg.Path] = e
			}
		}
		if cg.ID != 0 {
			if cur := r.exitedCgIDs[cg.ID]; cur == nil || cur.c.ID <= e.c.ID {
				r.exitedCgIDs[cg.ID] = e
			}
		}
	}
}

func (r *Registry) unindex(e *entry) {
	if e.c.State != StateActive {
		return
	}
	r.active--
	for _, cg := range e.c.Cgroups {
		if cg.Path != "" && r.paths[cg.Path] == e {
			delete(r.paths, cg.Path)
			for p := cg.Path; p != "/"; {
				p = parentPath(p)
				if r.below[p]--; r.below[p] <= 0 {
					delete(r.below, p)
				}
			}
		}
		if cg.ID != 0 && r.cgIDs[cg.ID] == e {
			delete(r.cgIDs, cg.ID)
		}
	}
	for i, pid := range e.c.PIDs {
		k := procKey{pid, e.starts[i]}
		if r.procs[k] == e {
			delete(r.procs, k)
		}
	}
	if r.uuids[e.c.UUID] == e {
		delete(r.uuids, e.c.UUID)
	}
}
