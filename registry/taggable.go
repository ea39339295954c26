package registry

import (
	"fmt"
	"path"
	"strings"

	"github.com/contid/contid"
)

// neverTaggable says why no container may ever hold cgroup p, or returns
// nil. Each of these cgroups holds the host rather than a container, so a
// tag there would hand the host's processes an ID they cannot shed:
//
//   - the root cgroup: every process not placed elsewhere, kernel threads;
//   - init.scope: a systemd instance's PID 1 (the host's at /init.scope);
//   - every slice: slices group units and never hold processes of their
//     own, so tagging one tags every unit below it, present and future;
//   - contidd's own cgroup and its ancestors: a tagged contidd would be
//     held by its own guards in enforcing mode (it could not reopen its
//     pins), and its events would read as a container's.
//
// own is contidd's own cgroup, "" when unknown.
func neverTaggable(p, own string) error {
	base := path.Base(p)
	switch {
	case p == "/":
		return fmt.Errorf("%w: the root cgroup holds the whole host and is never tagged", contid.ErrInvalidArgs)
	case base == "init.scope":
		return fmt.Errorf("%w: cgroup %s is a systemd instance's PID 1 (init.scope) and is never tagged", contid.ErrInvalidArgs, p)
	case strings.HasSuffix(base, ".slice"):
		return fmt.Errorf("%w: cgroup %s is a slice, which groups units and is never tagged; tag the scope or service inside it", contid.ErrInvalidArgs, p)
	case own != "" && within(own, p):
		return fmt.Errorf("%w: cgroup %s holds contidd itself (%s) and is never tagged", contid.ErrInvalidArgs, p, own)
	}
	return nil
}

// CheckTaggable refuses the cgroups no container may ever hold (see
// neverTaggable), with the reason.
func (r *Registry) CheckTaggable(p string) error {
	if err := ValidateCgroupPath(p); err != nil {
		return err
	}
	return neverTaggable(p, r.cfg.OwnCgroup)
}

// mayManage decides who may name an existing container or change what is
// recorded about it: its owner; a privileged caller outside every
// container; or a privileged caller in a container X that allows nesting,
// for containers nested inside X (not X itself). A container's processes
// are not trusted, so one that is not a nested orchestrator may manage
// nothing, and a nested orchestrator nothing outside its own subtree.
func (r *Registry) mayManage(c Caller, e *entry) error {
	if r.isOwner(e, c) {
		return nil
	}
	if !c.Privileged {
		return fmt.Errorf("%w: container %d belongs to another process, and the caller is not privileged", contid.ErrAccessDenied, e.c.ID)
	}
	if c.Container == contid.Unset {
		return nil
	}
	x := r.byID[c.Container]
	switch {
	case x == nil || x.c.State != StateActive:
		return fmt.Errorf("%w: the caller's container %d is not an active container", contid.ErrNotDescendant, c.Container)
	case e.c.ID == x.c.ID || !e.c.Chain.Within(x.c.ID):
		return fmt.Errorf("%w: container %d is outside the caller's container %d", contid.ErrNotDescendant, e.c.ID, x.c.ID)
	case x.c.Flags&contid.FlagAllowNesting == 0:
		return fmt.Errorf("%w: container %d was not created with AllowNesting", contid.ErrAccessDenied, x.c.ID)
	}
	return nil
}
