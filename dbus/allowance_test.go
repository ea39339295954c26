package dbus

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/internal/p2p"
	"github.com/contid/contid/registry"
)

// A rootless user's subordinate UIDs draw on that user's allowance; root's
// subordinate UIDs share one of their own, never root's.
func TestSubUIDGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subuid")
	content := "# comment\nalice:100000:65536\n0:300000:65536\nroot:400000:10\nghost:500000:100\nbad:line\nx:1:0\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	lookup := map[string]uint32{"alice": 1000, "root": 0}
	s := newSubUIDs(path)
	s.ranges = parseSubUIDs([]byte(content), func(n string) (uint32, bool) { u, ok := lookup[n]; return u, ok })
	s.checked, s.mtime, s.size = time.Now(), statMtime(t, path), int64(len(content))
	tests := []struct {
		uid  uint32
		want p2p.Group
	}{
		{0, p2p.Group{}},
		{1000, p2p.Group{UID: 1000}},
		{100000, p2p.Group{UID: 1000}},
		{165535, p2p.Group{UID: 1000}},
		{165536, p2p.Group{UID: 131072, Block: true}}, // past the range
		{300001, p2p.Group{UID: 0, RootSub: true}},
		{400009, p2p.Group{UID: 0, RootSub: true}},
		{500050, p2p.Group{UID: 500000}}, // an owner that does not resolve
		{65534, p2p.Group{UID: 65534}},
		// In no range: a 65,536-block, as nspawn's private users use.
		{0x80000 + 5, p2p.Group{UID: 0x80000, Block: true}},
		{0x8ffff, p2p.Group{UID: 0x80000, Block: true}},
		{0x90000, p2p.Group{UID: 0x90000, Block: true}},
	}
	for _, tt := range tests {
		if got := s.group(tt.uid); got != tt.want {
			t.Errorf("group(%d) = %+v, want %+v", tt.uid, got, tt.want)
		}
	}
	if (p2p.Group{UID: 0, RootSub: true}).IsRoot() {
		t.Error("root's subordinate UIDs count as root")
	}
}

func statMtime(t *testing.T, p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func TestInflight(t *testing.T) {
	var f inflight
	var releases []func()
	for i := 0; i < maxTagCallsPerGroup; i++ {
		r, ok := f.enter(p2p.Group{UID: 1000})
		if !ok {
			t.Fatalf("call %d refused", i)
		}
		releases = append(releases, r)
	}
	if _, ok := f.enter(p2p.Group{UID: 1000}); ok {
		t.Fatal("a user went past its calls in flight")
	}
	if _, ok := f.enter(p2p.Group{}); !ok {
		t.Fatal("root was limited")
	}
	releases[0]()
	releases[0]()
	if _, ok := f.enter(p2p.Group{UID: 1000}); !ok {
		t.Fatal("a released place was not given back")
	}
	if f.all != maxTagCallsPerGroup {
		t.Fatalf("%d in flight, want %d (a double release counted twice?)", f.all, maxTagCallsPerGroup)
	}
}

// UID 0 counts as root only outside every container. Every connection
// from a container draws on its container's allowance, whatever its UID
// (root in a container can switch among any number of UIDs), and a
// connector that is gone on one of its own, so none can use up root's or
// take one allowance per UID.
func TestAllowanceOfContainer(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	tr := m.cfg.Tracker.(*fakeTracker)
	m.groups = newSubUIDs(filepath.Join(t.TempDir(), "subuid"))
	self := uint32(os.Getpid())
	gone := uint32(1<<22 + 7)
	tag := func(id contid.ID) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if id == contid.Unset {
			delete(tr.pids, self)
		} else {
			tr.pids[self] = id
		}
	}
	for _, chain := range []contid.Chain{{42}, {43, 42}, {44, 43, 42}} {
		cg := registry.Cgroup{Path: fmt.Sprintf("/machine.slice/n%d.scope", chain.ID()), ID: uint64(chain.ID())}
		if _, _, err := m.cfg.Registry.Adopt(contid.Tag{Chain: chain}, cg); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		in   contid.ID
		uid  uint32
		pid  uint32
		want p2p.Group
	}{
		{"root in no container", contid.Unset, 0, self, p2p.Group{}},
		{"user in no container", contid.Unset, 1000, self, p2p.Group{UID: 1000}},
		{"root in container 42", 42, 0, self, p2p.ContainerGroup(42)},
		{"user 1000 in container 42", 42, 1000, self, p2p.ContainerGroup(42)},
		{"user 2000 in container 42: the same allowance", 42, 2000, self, p2p.ContainerGroup(42)},
		{"root whose connector is gone", contid.Unset, 0, gone, p2p.ContainerGroup(contid.Invalid)},
		{"user whose connector is gone", contid.Unset, 1000, gone, p2p.ContainerGroup(contid.Invalid)},
		{"root in 44, nested in 43 in 42: 42's allowance", 44, 0, self, p2p.ContainerGroup(42)},
		{"root in 43, nested in 42: 42's allowance", 43, 0, self, p2p.ContainerGroup(42)},
		{"root in 45, which contidd has no record of: the unknown containers' allowance", 45, 0, self, p2p.ContainerGroup(contid.Invalid)},
	} {
		tag(tc.in)
		if g := m.allowance(tc.uid, tc.pid); g != tc.want {
			t.Errorf("%s: group %+v, want %+v", tc.name, g, tc.want)
		}
	}
	tag(contid.Unset)
}
