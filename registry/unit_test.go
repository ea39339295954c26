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
