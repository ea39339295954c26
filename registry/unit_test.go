package registry

import (
	"testing"

	"github.com/contid/contid"
)

// TestSetUnitIfUnset: the adoption of an autotagged cgroup records its
// unit only where none is recorded, and never touches the name, which a
// manager's hook may have given the container meanwhile.
func TestSetUnitIfUnset(t *testing.T) {
	for _, tc := range []struct {
		name             string
		namedAs, unitWas string
		unit             string
		wantSet          bool
		wantName         string
		wantUnit         string
	}{
		{name: "no unit yet", unit: "a.scope", wantSet: true, wantUnit: "a.scope"},
		{name: "named meanwhile", namedAs: "pweb", unit: "a.scope", wantSet: true, wantName: "pweb", wantUnit: "a.scope"},
		{name: "unit given meanwhile", namedAs: "pweb", unitWas: "libpod-1.scope", unit: "a.scope", wantName: "pweb", wantUnit: "libpod-1.scope"},
		{name: "no unit to give", unit: "", wantUnit: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			id := contid.ID(900)
			if _, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}, Cgroup{Path: "/machine.slice/a.scope", ID: 31337}); err != nil {
				t.Fatal(err)
			}
			if tc.namedAs != "" || tc.unitWas != "" {
				if err := h.r.SetMetadata(id, tc.namedAs, tc.unitWas); err != nil {
					t.Fatal(err)
				}
			}
			set, err := h.r.SetUnitIfUnset(id, tc.unit)
			if err != nil {
				t.Fatal(err)
			}
			c, err := h.r.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if set != tc.wantSet || c.Name != tc.wantName || c.Unit != tc.wantUnit {
				t.Fatalf("set %v, name %q, unit %q; want %v, %q, %q", set, c.Name, c.Unit, tc.wantSet, tc.wantName, tc.wantUnit)
			}
		})
	}
	h := newHarness(t, Config{})
	if _, err := h.r.SetUnitIfUnset(901, "b.scope"); err == nil {
		t.Fatal("a unit for no container: no error")
	}
}

// TestHeldProcesses: whether the kernel's walk found processes in a
// cgroup of the container is on the value TagCgroup returns, on the
// registry's record, Get and List, and survives a reopen; a later empty
// cgroup of a pod does not take it back.
func TestHeldProcesses(t *testing.T) {
	const path = "/machine.slice/tt.scope"
	for _, tc := range []struct {
		name  string
		tasks int
		// tag makes the call under test, after any setup it needs.
		tag  func(h *harness) (*Container, error)
		want bool
	}{
		{
			name: "new container, tasks in its cgroup", tasks: 3, want: true,
			tag: func(h *harness) (*Container, error) { return h.r.TagCgroup(orchestrator, 0, target(path), Options{}) },
		},
		{
			name: "new container, empty cgroup", tasks: 0, want: false,
			tag: func(h *harness) (*Container, error) { return h.r.TagCgroup(orchestrator, 0, target(path), Options{}) },
		},
		{
			name: "further cgroup of an empty pod brings tasks", tasks: 2, want: true,
			tag: func(h *harness) (*Container, error) {
				a := h.mustTag(orchestrator, 0, "/machine.slice/tt-a.scope", Options{})
				return h.r.TagCgroup(orchestrator, a.ID, target(path), Options{})
			},
		},
		{
			name: "empty further cgroup of a pod that held tasks", tasks: 0, want: true,
			tag: func(h *harness) (*Container, error) {
				h.k.putTasks("/machine.slice/tt-a.scope", 1)
				a := h.mustTag(orchestrator, 0, "/machine.slice/tt-a.scope", Options{})
				return h.r.TagCgroup(orchestrator, a.ID, target(path), Options{})
			},
		},
		{
			// A repeat runs no walk; the record keeps the first call's.
			name: "repeated call", tasks: 4, want: true,
			tag: func(h *harness) (*Container, error) {
				h.mustTag(orchestrator, 0, path, Options{})
				return h.r.TagCgroup(orchestrator, 0, target(path), Options{})
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.k.putTasks(path, tc.tasks)
			c, err := tc.tag(h)
			if err != nil {
				t.Fatal(err)
			}
			if c.HeldProcesses != tc.want {
				t.Fatalf("TagCgroup returned HeldProcesses %v, want %v", c.HeldProcesses, tc.want)
			}
			stored := func(when string) {
				t.Helper()
				h.r.mu.RLock()
				e := h.r.byID[c.ID]
				h.r.mu.RUnlock()
				if e == nil || e.c.HeldProcesses != tc.want {
					t.Fatalf("%s: registry record %+v; want HeldProcesses %v", when, e, tc.want)
				}
				if g, err := h.r.Get(c.ID); err != nil || g.HeldProcesses != tc.want {
					t.Fatalf("%s: Get: %+v, %v; want HeldProcesses %v", when, g, err, tc.want)
				}
				for _, l := range h.r.List() {
					if l.ID == c.ID && l.HeldProcesses != tc.want {
						t.Fatalf("%s: List holds container %d with HeldProcesses %v", when, l.ID, l.HeldProcesses)
					}
				}
			}
			stored("after the tag")
			h.reopen()
			stored("after a reopen")
		})
	}
}
