package dbus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/contid/contid/kernel"
)

// lateCgroups cannot resolve a cgroup for its first calls, as happens to
// an autotag event read before kernfs_activate() made the directory
// visible; after that it resolves it, or, if gone, never does.
type lateCgroups struct {
	fakeCgroups
	invisible int
	gone      bool
	calls     int
}

func (c *lateCgroups) PathByID(id uint64) (string, error) {
	c.calls++
	if c.gone || c.calls <= c.invisible {
		return "", fmt.Errorf("%w: id %d", kernel.ErrNoSuchCgroup, id)
	}
	return "/machine.slice/web.scope", nil
}

func TestNewCgroupPathWaitsForVisibility(t *testing.T) {
	tests := []struct {
		name      string
		cg        *lateCgroups
		wantPath  string
		wantGone  bool
		wantCalls int
	}{
		{"visible at once", &lateCgroups{}, "/machine.slice/web.scope", false, 1},
		{"visible after two tries", &lateCgroups{invisible: 2}, "/machine.slice/web.scope", false, 3},
		{"removed", &lateCgroups{gone: true}, "", true, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{cfg: Config{Cgroups: tt.cg}}
			p, err := m.newCgroupPath(42)
			if p != tt.wantPath || errors.Is(err, kernel.ErrNoSuchCgroup) != tt.wantGone || tt.cg.calls != tt.wantCalls {
				t.Fatalf("newCgroupPath = %q, %v after %d calls; want %q, gone %v, %d calls", p, err, tt.cg.calls, tt.wantPath, tt.wantGone, tt.wantCalls)
			}
		})
	}
}
