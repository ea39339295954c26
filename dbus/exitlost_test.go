package dbus

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// gateEmitter holds up every TamperDenied until released, as a transport
// that is slow to take a signal (a system bus that does not read, a
// thousand peers to copy to) holds up whoever emits.
type gateEmitter struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gateEmitter) emit(_ godbus.ObjectPath, _, member string, _ ...any) {
	if member != "TamperDenied" {
		return
	}
	g.once.Do(func() { close(g.entered) })
	<-g.release
}

// A container whose processes exit right after it was tagged is still
// seen to exit while its cgroup stays, however slow the transports are.
func TestExitSeenWhileTransportsAreSlow(t *testing.T) {
	m, _, _, root := newTestManager(t)
	gate := &gateEmitter{entered: make(chan struct{}), release: make(chan struct{})}
	m.addEmitter(gate)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.release)
		}
	}
	defer release()
	go m.EmitTamperDenied(1, 1, "test")
	<-gate.entered

	tr := m.cfg.Tracker.(*fakeTracker)
	dir := filepath.Join(root, "target", "c.scope")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "cgroup.events")
	if err := os.WriteFile(events, []byte(eventsPopulated), 0o644); err != nil {
		t.Fatal(err)
	}
	cgid, err := fakeCgroups{root}.ID("/target/c.scope")
	if err != nil {
		t.Fatal(err)
	}
	const id = contid.ID(100)
	tag := contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}
	tr.mu.Lock()
	tr.tags[cgid] = tag
	tr.claimed[id] = true
	tr.mu.Unlock()
	m.HandleKernelEvent(kernel.Event{Kind: kernel.EventAutotag, Tag: tag, CgroupID: cgid})

	// Its processes exit; the cgroup stays (a runtime removes it later).
	if err := os.WriteFile(events, []byte(eventsEmpty), 0o644); err != nil {
		t.Fatal(err)
	}
	m.checkExits()
	release()
	m.checkExits()
	c, err := m.cfg.Registry.Get(id)
	if err != nil || c.State != registry.StateExited {
		t.Fatalf("container %d after its processes exited and two exit checks: state %v, %v; want exited", id, c.State, err)
	}
}

// A container tagged through TagCgroup whose processes exit before the
// next exit check is seen to exit. When the kernel's walk tagged tasks,
// that alone says the cgroup held processes: whatever cgroup.events says
// at the reply, or if it cannot be read, the exit is seen. When the walk
// tagged none, cgroup.events at the reply decides, as for any other new
// container: processes there (forks the kernel tagged before its walk)
// make a later emptying an exit, and an empty cgroup stays active.
func TestExitSeenAfterTagByWalkCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tasks int // what the kernel's walk tagged
		// atReply is cgroup.events when the tag call returns; "" for
		// no file that could be read.
		atReply    string
		wantExited bool
	}{
		{"walk tagged tasks, still there at the reply", 2, eventsPopulated, true},
		{"walk tagged tasks, gone by the reply", 1, eventsEmpty, true},
		{"walk tagged tasks, nothing read at the reply", 1, "", true},
		{"walk tagged none, processes there at the reply", 0, eventsPopulated, true},
		{"walk tagged none, empty cgroup", 0, eventsEmpty, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			target, events := fakeTaskCgroup(t, m, root, "/target/c.scope", tc.atReply, tc.tasks)
			c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.Unset, target, registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			m.containerNew(c)

			// Every process is gone by the exit check; the cgroup stays.
			if err := os.WriteFile(events, []byte(eventsEmpty), 0o644); err != nil {
				t.Fatal(err)
			}
			m.checkExits()
			got, err := m.cfg.Registry.Get(c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if exited := got.State == registry.StateExited; exited != tc.wantExited {
				t.Fatalf("container %d (walk tagged %d) after its cgroup emptied and an exit check: state %v; want exited %v", c.ID, tc.tasks, got.State, tc.wantExited)
			}
		})
	}
}

// What cgroup.events says of a cgroup without and with processes.
const (
	eventsEmpty     = "populated 0\nfrozen 0\n"
	eventsPopulated = "populated 1\nfrozen 0\n"
)

// fakeTaskCgroup makes cgroup rel under the fake cgroup root with
// cgroup.events holding events ("" for no such file), and has the fake
// kernel's tag walk find tasks in it. It returns the tag target and the
// path of cgroup.events.
func fakeTaskCgroup(t *testing.T, m *Manager, root, rel, events string, tasks int) (registry.CgroupTarget, string) {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ev := filepath.Join(dir, "cgroup.events")
	if events != "" {
		if err := os.WriteFile(ev, []byte(events), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target, err := m.resolveCgroup(rel, "")
	if err != nil {
		t.Fatal(err)
	}
	tr := m.cfg.Tracker.(*fakeTracker)
	tr.mu.Lock()
	tr.tasks[target.ID] = tasks
	tr.mu.Unlock()
	return target, ev
}

// tagGranted is what TagCgroup does once the caller is authorized (which
// needs root, so the call itself cannot be made by a test run as any
// user): the registry's tag, then granted.
func tagGranted(t *testing.T, m *Manager, target registry.CgroupTarget, id uint64) uint64 {
	t.Helper()
	had := m.existed(id)
	c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.ID(id), target, registry.Options{})
	if err != nil {
		t.Fatalf("TagCgroup %s as %d: %v", target.Path, id, err)
	}
	got, _, err := m.granted(&callerInfo{Caller: m.internalCaller()}, c, !had, "cgroup "+target.Path)
	if err != nil {
		t.Fatalf("TagCgroup %s as %d: %v", target.Path, id, err)
	}
	return got
}
