package dbus

import (
	"fmt"
	"strings"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

func TestDockerIDOfScope(t *testing.T) {
	const id = "4f66ad9a0b2e3d9f1b7c8e5a6d2f0c1b3a4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f"
	m := &Manager{cfg: Config{AutotagScopes: []contid.ScopePattern{{Parent: "/system.slice", Prefix: "docker-", Suffix: ".scope"}}}}
	for _, tc := range []struct{ cgroup, want string }{
		{"/system.slice/docker-" + id + ".scope", id},
		{"/system.slice/docker-" + id[:12] + ".scope", ""},
		{"/system.slice/docker-" + strings.ToUpper(id) + ".scope", ""},
		{"/machine.slice/docker-" + id + ".scope", ""},
		{"/system.slice/docker.service", ""},
	} {
		if got := m.dockerIDOfScope(tc.cgroup); got != tc.want {
			t.Errorf("dockerIDOfScope(%s) = %q, want %q", tc.cgroup, got, tc.want)
		}
	}
}

// The labels of created containers are kept until dockerd destroys them,
// and no more than maxDockerLabels of them: the oldest go first.
func TestDockerLabelsBounded(t *testing.T) {
	var d dockerLabels
	idOf := func(i int) string { return fmt.Sprintf("%064x", i) }
	for i := 0; i < maxDockerLabels+10; i++ {
		d.remember(idOf(i), registry.Options{Name: fmt.Sprint("c", i)})
	}
	d.forget(idOf(maxDockerLabels + 5))
	d.remember(idOf(20), registry.Options{Name: "renamed"})
	for _, tc := range []struct {
		i    int
		want string // "" for none
	}{
		{0, ""},
		{9, ""},
		{10, "c10"},
		{20, "renamed"},
		{maxDockerLabels + 5, ""},
		{maxDockerLabels + 9, fmt.Sprint("c", maxDockerLabels+9)},
	} {
		o, ok := d.lookup(idOf(tc.i))
		if ok != (tc.want != "") || o.Name != tc.want {
			t.Errorf("container %d: %q (%v), want %q", tc.i, o.Name, ok, tc.want)
		}
	}
	if len(d.byID) != len(d.order) || len(d.byID) > maxDockerLabels {
		t.Errorf("%d labels, %d in order; at most %d", len(d.byID), len(d.order), maxDockerLabels)
	}
}

// `docker rename` renames the kept labels, which the scope `docker
// restart` makes is then named with; a container whose labels are not
// kept gets none from a rename (its start's inspect names it).
func TestDockerLabelsRename(t *testing.T) {
	const id = "4f66ad9a0b2e3d9f1b7c8e5a6d2f0c1b3a4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f"
	const other = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		kept    bool
		newName string
		want    registry.Options
		ok      bool
	}{
		{"kept", true, "drn2", registry.Options{Name: "drn2", Manager: dockerManager, Image: "contid-busybox", ManagerID: id}, true},
		{"to a name contidd refuses", true, "bad\nname", registry.Options{Manager: dockerManager, Image: "contid-busybox", ManagerID: id}, true},
		{"not kept", false, "drn2", registry.Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d dockerLabels
			d.remember(other, dockerOptions(other, "drn1x", ""))
			if tc.kept {
				d.remember(id, dockerOptions(id, "drn1", "contid-busybox"))
			}
			d.rename(id, tc.newName)
			o, ok := d.lookup(id)
			if ok != tc.ok || o != tc.want {
				t.Errorf("after rename: %+v (%v), want %+v (%v)", o, ok, tc.want, tc.ok)
			}
			if o, _ := d.lookup(other); o.Name != "drn1x" {
				t.Errorf("another container renamed: %+v", o)
			}
		})
	}
}
