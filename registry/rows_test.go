package registry

import (
	"fmt"
	"testing"

	"github.com/contid/contid"
)

// Rows shows of every record, exited ones and nested ones too, what List
// would: the ID, its parent, the name and unit, and the primary cgroup;
// sorted by ID whatever order the IDs were given in.
func TestRows(t *testing.T) {
	for _, tt := range []struct {
		name string
		// tag tags containers on h and marks some exited.
		tag func(h *harness)
	}{
		{"none", func(*harness) {}},
		{"IDs given out of order", func(h *harness) {
			for _, id := range []contid.ID{900, 7, 42} {
				h.mustTag(orchestrator, id, fmt.Sprintf("/machine.slice/c%d.scope", id), Options{Name: fmt.Sprintf("n%d", id)})
			}
		}},
		{"nested, with a pod's second cgroup", func(h *harness) {
			outer := h.mustTag(orchestrator, 0, "/machine.slice/outer.scope", Options{AllowNesting: true, Name: "outer"})
			h.mustTag(h.callerIn(outer, 4000), 0, "/machine.slice/outer.scope/payload/inner", Options{})
			h.mustTag(orchestrator, outer.ID, "/machine.slice/outer-sidecar.scope", Options{})
		}},
		{"exited", func(h *harness) {
			c := h.mustTag(orchestrator, 0, "/machine.slice/gone.scope", Options{Name: "gone"})
			if _, err := h.r.MarkExited(c.ID); err != nil {
				h.t.Fatal(err)
			}
			h.mustTag(orchestrator, 0, "/machine.slice/here.scope", Options{Name: "here"})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tt.tag(h)
			list, rows := h.r.List(), h.r.Rows()
			if len(rows) != len(list) {
				t.Fatalf("%d rows for %d records", len(rows), len(list))
			}
			for i, c := range list {
				want := Row{ID: c.ID, Parent: c.Parent(), Name: c.Name, Unit: c.Unit, Cgroup: c.Cgroups[0].Path}
				if rows[i] != want {
					t.Errorf("row %d is %+v, want %+v", i, rows[i], want)
				}
			}
		})
	}
}
