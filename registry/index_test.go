package registry

import (
	"slices"
	"testing"

	"github.com/contid/contid"
)

// TestExitedLookups: a cgroup path or id no active container holds
// resolves to the exited record with the highest ID, also after that
// record or an older one was updated and after a reopen.
func TestExitedLookups(t *testing.T) {
	const p = "/machine.slice/m.scope"
	h := newHarness(t, Config{})
	first := h.mustTag(orchestrator, 0, p, Options{Name: "one"})
	if _, err := h.r.MarkExited(first.ID); err != nil {
		t.Fatal(err)
	}
	second := h.mustTag(orchestrator, 0, p, Options{Name: "two"})
	if _, err := h.r.MarkExited(second.ID); err != nil {
		t.Fatal(err)
	}
	other := h.mustTag(orchestrator, 0, "/machine.slice/other.scope", Options{})

	check := func(when string, want contid.ID) {
		t.Helper()
		for name, get := range map[string]func() (*Container, error){
			"ByCgroupPath": func() (*Container, error) { return h.r.ByCgroupPath(p) },
			"ByCgroupID":   func() (*Container, error) { return h.r.ByCgroupID(cgid(p)) },
		} {
			c, err := get()
			if err != nil || c.ID != want {
				t.Fatalf("%s: %s = %v, %v; want %d", when, name, c, err, want)
			}
		}
	}
	check("two exited", second.ID)
	// Updating an exited record replaces it in place; neither update may
	// make the older record win.
	if err := h.r.SetMetadata(first.ID, "renamed", ""); err != nil {
		t.Fatal(err)
	}
	check("older renamed", second.ID)
	if err := h.r.SetMetadata(second.ID, "renamed too", ""); err != nil {
		t.Fatal(err)
	}
	check("newer renamed", second.ID)
	if c, _ := h.r.ByCgroupPath(p); c.Name != "renamed too" {
		t.Fatalf("lookup returned a stale version: %+v", c)
	}
	h.reopen()
	check("after reopen", second.ID)

	// An active container on the path wins over the exited ones.
	third := h.mustTag(orchestrator, 0, p, Options{})
	check("active again", third.ID)

	// Only active IDs are listed.
	ids := h.r.ActiveIDs()
	slices.Sort(ids)
	if want := []contid.ID{other.ID, third.ID}; !slices.Equal(ids, want) {
		t.Fatalf("ActiveIDs %v, want %v", ids, want)
	}
	if _, err := h.r.ByCgroupPath("/machine.slice/never.scope"); err == nil {
		t.Fatal("a path never tagged was found")
	}
}
