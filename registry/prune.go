package registry

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/contid/contid"
)

// orderExits lists the exited records loaded at Open, oldest exit first.
func (r *Registry) orderExits() {
	r.exitOrder = r.exitOrder[:0]
	for id, e := range r.byID {
		if e.c.State == StateExited {
			r.exitOrder = append(r.exitOrder, id)
		}
	}
	slices.SortFunc(r.exitOrder, func(a, b contid.ID) int {
		ea, eb := r.byID[a], r.byID[b]
		if c := ea.c.Exited.Compare(eb.c.Exited); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}

// pruneExited drops the oldest exited records beyond cfg.KeepExited, so a
// loop that creates and removes containers cannot grow the registry (and
// its files) without bound. Active records are never pruned, nor counted.
//
// A pruned ID stays unique: the prune raises r.sealed to it, and sealed
// refuses every explicit request for an unrecorded ID at or below it
// (takeID), as it does after a crash; allocation only moves up from the
// high-water mark, which the ID never exceeds. The journal's prune line
// carries the same to the next Open. What goes is the record's name, unit
// and cgroups: GetContainer and the lookups by cgroup, unit or name no
// longer find it.
func (r *Registry) pruneExited() error {
	for len(r.exitOrder) > r.cfg.KeepExited {
		id := r.exitOrder[0]
		e := r.byID[id]
		if e == nil || e.c.State != StateExited {
			r.exitOrder = r.exitOrder[1:]
			continue
		}
		if err := r.st.prune(e); err != nil {
			return fmt.Errorf("prune exited container %d: %w", id, err)
		}
		r.exitOrder = r.exitOrder[1:]
		r.mu.Lock()
		delete(r.byID, id)
		r.unindexExited(e)
		r.sealed = max(r.sealed, id)
		r.mu.Unlock()
	}
	return nil
}

// unindexExited drops a pruned record from the exited lookups. Another
// exited record with the same cgroup is not promoted in its place (finding
// it would need a scan); it is still found by its ID.
func (r *Registry) unindexExited(e *entry) {
	for _, cg := range e.c.Cgroups {
		if cg.Path != "" && r.exitedPaths[cg.Path] == e {
			delete(r.exitedPaths, cg.Path)
		}
		if cg.ID != 0 && r.exitedCgIDs[cg.ID] == e {
			delete(r.exitedCgIDs, cg.ID)
		}
	}
}
