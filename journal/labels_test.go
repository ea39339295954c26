package journal

import (
	"fmt"
	"testing"

	"github.com/contid/contid"
)

// labelled is the registry as the forwarder sees it, with every label.
type labelled map[contid.ID]Labels

func (l labelled) Lookup(id contid.ID) (contid.Chain, Labels, bool) {
	x, ok := l[id]
	return contid.Chain{id}, x, ok
}

// Every attributed event carries what the registry knows of the
// container's origin, and no field for what it does not know.
func TestForwarderLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels Labels
		want   map[string][]string
	}{
		{"podman", Labels{Name: "pweb", Unit: "libpod-3f2a.scope", Manager: "podman", Image: "busybox", ManagerID: "3f2a", UUID: testUUID}, map[string][]string{
			"AUDIT_CONTAINER_NAME":       {"pweb"},
			"AUDIT_CONTAINER_UNIT":       {"libpod-3f2a.scope"},
			"AUDIT_CONTAINER_MANAGER":    {"podman"},
			"AUDIT_CONTAINER_IMAGE":      {"busybox"},
			"AUDIT_CONTAINER_MANAGER_ID": {"3f2a"},
			"AUDIT_CONTAINER_UUID":       {testUUID},
		}},
		{"uuid only", Labels{UUID: testUUID}, map[string][]string{
			"AUDIT_CONTAINER_NAME": nil,
			"AUDIT_CONTAINER_UUID": {testUUID},
		}},
		{"manager only", Labels{Manager: "nspawn"}, map[string][]string{
			"AUDIT_CONTAINER_NAME":       nil,
			"AUDIT_CONTAINER_MANAGER":    {"nspawn"},
			"AUDIT_CONTAINER_IMAGE":      nil,
			"AUDIT_CONTAINER_MANAGER_ID": nil,
		}},
		{"autotagged, unnamed", Labels{Unit: "x.scope"}, map[string][]string{
			"AUDIT_CONTAINER_UNIT":       {"x.scope"},
			"AUDIT_CONTAINER_UUID":       nil,
			"AUDIT_CONTAINER_MANAGER":    nil,
			"AUDIT_CONTAINER_IMAGE":      nil,
			"AUDIT_CONTAINER_MANAGER_ID": nil,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeSender{t: t}
			f := NewForwarder(out, labelled{4: tt.labels}, Config{})
			execEvent(t, 4, contid.LiveProcess, f)
			if len(out.entries) != 1 {
				t.Fatalf("%d entries, want 1", len(out.entries))
			}
			for name, w := range tt.want {
				if got := values(out.entries[0], name); fmt.Sprint(got) != fmt.Sprint(w) {
					t.Errorf("%s = %q, want %q", name, got, w)
				}
			}
		})
	}
}
