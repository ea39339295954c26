package registry

import (
	"fmt"
	"slices"
	"testing"

	"github.com/contid/contid"
)

// Beyond KeepExited the oldest exits are pruned; active records never are.
// A pruned ID is still refused to explicit requests, after a reopen on a
// kernel that forgot every claim (a reboot), and after a compaction that
// drops the journal's prune lines.
func TestKeepExited(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			h := newHarness(t, Config{KeepExited: 3})
			path := func(id contid.ID) string { return fmt.Sprintf("/machine.slice/c%d.scope", id) }
			for id := contid.ID(11); id <= 16; id++ {
				h.mustTag(orchestrator, id, path(id), Options{})
			}
			for id := contid.ID(11); id <= 15; id++ {
				if _, err := h.r.MarkExited(id); err != nil {
					t.Fatal(err)
				}
			}
			check := func(when string) {
				t.Helper()
				var ids []contid.ID
				for _, c := range h.r.List() {
					ids = append(ids, c.ID)
				}
				if want := []contid.ID{13, 14, 15, 16}; !slices.Equal(ids, want) {
					t.Fatalf("%s: records %v, want %v", when, ids, want)
				}
				if _, err := h.r.Get(11); err == nil {
					t.Fatalf("%s: pruned container 11 still found", when)
				}
				if _, err := h.r.ByCgroupPath(path(12)); err == nil {
					t.Fatalf("%s: pruned container 12 still found by its cgroup", when)
				}
				for _, id := range []contid.ID{11, 12} {
					_, err := h.r.TagCgroup(orchestrator, id, target(fmt.Sprintf("/machine.slice/again%d-%s.scope", id, when)), Options{})
					wantErr(t, err, contid.ErrIDInUse)
				}
			}
			check("at once")
			if compact {
				if err := h.r.st.compact(h.r); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.r.Close(); err != nil {
				t.Fatal(err)
			}
			h.k = newFakeKernel()
			h.open()
			check("after a reboot")
			// IDs above every pruned one are still free for the asking.
			h.mustTag(orchestrator, 100, "/machine.slice/new.scope", Options{})
		})
	}
}
