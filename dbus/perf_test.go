package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/registry"
)

// TestCachedBusCaller: a sender verified once is identified again from
// the cache, without a bus call (the connection here cannot make one),
// and refused once its PID names a process with another start time.
func TestCachedBusCaller(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	self := uint32(os.Getpid())
	start, err := startTime(self)
	if err != nil {
		t.Fatal(err)
	}
	bus := &godbus.Conn{} // unconnected: any bus call would fail or panic
	tests := []struct {
		name   string
		cached busCaller
		ok     bool
	}{
		{"same process", busCaller{pid: self, start: start}, true},
		{"PID reused", busCaller{pid: self, start: start + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.callers.put(bus, ":1.7", tt.cached)
			ci, err := m.identify(context.Background(), &peer{bus: bus, sender: ":1.7", pidfd: -1})
			if !tt.ok {
				if !errors.Is(err, registry.ErrAccessDenied) {
					t.Fatalf("identify = %v, want AccessDenied", err)
				}
				if _, still := m.callers.get(bus, ":1.7"); still {
					t.Fatal("a refused cache entry was kept")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ci.close()
			if ci.PID != self || ci.Start != start || ci.Cgroup != "/caller" {
				t.Fatalf("identified as %+v", ci.Caller)
			}
		})
	}
}

func TestCallerCacheBounded(t *testing.T) {
	var c callerCache
	bus := &godbus.Conn{}
	for i := range maxCachedCallers + 10 {
		c.put(bus, fmt.Sprintf(":1.%d", i), busCaller{pid: 1, start: 1})
	}
	if n := len(c.m); n > maxCachedCallers {
		t.Fatalf("%d cached callers, bound %d", n, maxCachedCallers)
	}
	if _, ok := c.get(&godbus.Conn{}, fmt.Sprintf(":1.%d", maxCachedCallers+9)); ok {
		t.Fatal("a name on another bus connection matched")
	}
}

// TestExitCheckInSlices: a pass visits at most exitBatch containers per
// tick and still reaches every container.
func TestExitCheckInSlices(t *testing.T) {
	m, _, _, root := newTestManager(t)
	n := exitBatch + 5
	ids := make(map[uint64]bool)
	for i := range n {
		rel := fmt.Sprintf("/target/c%d", i)
		if err := os.Mkdir(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), 0, registry.CgroupTarget{Path: rel, ID: uint64(1000 + i)}, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ids[uint64(c.ID)] = true
		// Removed cgroups: every container has exited.
		if err := os.Remove(filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	m.checkExits()
	if a := m.cfg.Registry.Active(); a != n-exitBatch {
		t.Fatalf("after one tick %d active, want %d", a, n-exitBatch)
	}
	m.checkExits()
	if a := m.cfg.Registry.Active(); a != 0 {
		t.Fatalf("after two ticks %d active, want 0", a)
	}
}

func TestCgroupPopulated(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		events string
		want   bool
	}{
		{"populated 1\nfrozen 0\n", true},
		{"populated 0\nfrozen 0\n", false},
	}
	for _, tt := range tests {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte(tt.events), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := cgroupPopulated(dir); err != nil || got != tt.want {
			t.Errorf("%q: %v, %v; want %v", tt.events, got, err, tt.want)
		}
	}
	if _, err := cgroupPopulated(filepath.Join(dir, "gone")); err == nil {
		t.Error("a missing cgroup read as existing")
	}
}
