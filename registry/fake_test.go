package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/contid/contid"
)

// fakeKernel stands in for kernel.BPF: one ID sequence with a floor, and
// the tags it was asked to apply.
type fakeKernel struct {
	mu      sync.Mutex
	next    contid.ID
	claimed map[contid.ID]bool
	floors  []contid.ID
	cgroups map[uint64]contid.Tag
	procs   map[int]contid.Tag
	// tasks is how many tasks the tag walk finds in each cgroup; none
	// unless a test puts some there, as in a cgroup just made.
	tasks   map[uint64]int
	failTag error // returned by TagCgroup and TagProcess when set
	tagged  int   // successful TagCgroup and TagProcess calls
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		claimed: make(map[contid.ID]bool),
		cgroups: make(map[uint64]contid.Tag),
		procs:   make(map[int]contid.Tag),
		tasks:   make(map[uint64]int),
	}
}

func (k *fakeKernel) AllocateID() (contid.ID, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		k.next++
		if !k.claimed[k.next] {
			k.claimed[k.next] = true
			return k.next, nil
		}
	}
}

func (k *fakeKernel) ClaimID(id contid.ID) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.claimed[id] {
		return fmt.Errorf("claim %d: %w", id, contid.ErrIDTaken)
	}
	k.claimed[id] = true
	return nil
}

func (k *fakeKernel) SetFloor(floor contid.ID) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.floors = append(k.floors, floor)
	if floor > k.next {
		k.next = floor
	}
	return nil
}

func (k *fakeKernel) TagCgroup(cgroupID uint64, tag contid.Tag) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failTag != nil {
		return 0, k.failTag
	}
	k.cgroups[cgroupID] = tag
	k.tagged++
	return k.tasks[cgroupID], nil
}

// putTasks places n tasks in the cgroup at path, for the tag walk to find.
func (k *fakeKernel) putTasks(path string, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.tasks[cgid(path)] = n
}

func (k *fakeKernel) TagProcess(pidfd int, tag contid.Tag) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failTag != nil {
		return k.failTag
	}
	k.procs[pidfd] = tag
	k.tagged++
	return nil
}

func (k *fakeKernel) cgroupTag(id uint64) (contid.Tag, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.cgroups[id]
	return t, ok
}

func (k *fakeKernel) lastFloor() contid.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.floors) == 0 {
		return contid.Invalid
	}
	return k.floors[len(k.floors)-1]
}

// alive is the set of owner processes that still run.
type alive struct {
	mu   sync.Mutex
	pids map[procKey]bool
}

func (a *alive) set(pid uint32, start uint64, up bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pids[procKey{pid, start}] = up
}

func (a *alive) check(pid uint32, start uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pids[procKey{pid, start}]
}

// clock moves one millisecond per reading, so records get distinct times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

type harness struct {
	t     testing.TB
	dir   string
	k     *fakeKernel
	alive *alive
	clock *clock
	cfg   Config
	r     *Registry
	// records and kernelTags at the last checkpoint: what a refused call
	// must leave unchanged.
	records, kernelTags int
}

// checkpoint marks the end of a test's setup.
func (h *harness) checkpoint() {
	h.records = len(h.r.List())
	h.k.mu.Lock()
	h.kernelTags = h.k.tagged
	h.k.mu.Unlock()
}

// orchestrator is a privileged, untagged caller outside machine.slice.
var orchestrator = Caller{PID: 100, UID: 0, Start: 5000, Privileged: true, Cgroup: "/system.slice/orch.service"}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		dir:   t.TempDir(),
		k:     newFakeKernel(),
		alive: &alive{pids: make(map[procKey]bool)},
		clock: &clock{t: time.Date(2026, 11, 28, 5, 0, 0, 0, time.Local)},
	}
	h.alive.set(orchestrator.PID, orchestrator.Start, true)
	cfg.OwnerAlive = h.alive.check
	cfg.Now = h.clock.now
	if cfg.Logf == nil {
		cfg.Logf = func(format string, args ...any) { t.Logf("registry: "+format, args...) }
	}
	h.cfg = cfg
	h.open()
	t.Cleanup(func() { h.r.Close() })
	return h
}

func (h *harness) open() {
	h.t.Helper()
	r, err := Open(h.dir, h.k, h.cfg)
	if err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	h.r = r
}

func (h *harness) reopen() {
	h.t.Helper()
	if err := h.r.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.open()
}

// cgroupIDs hands out distinct fake cgroup inode numbers per path.
var cgroupIDs = struct {
	sync.Mutex
	next uint64
	ids  map[string]uint64
}{next: 1000, ids: map[string]uint64{}}

func cgid(path string) uint64 {
	cgroupIDs.Lock()
	defer cgroupIDs.Unlock()
	if id, ok := cgroupIDs.ids[path]; ok {
		return id
	}
	cgroupIDs.next++
	cgroupIDs.ids[path] = cgroupIDs.next
	return cgroupIDs.next
}

func target(path string) CgroupTarget { return CgroupTarget{Path: path, ID: cgid(path)} }

func (h *harness) mustTag(c Caller, id contid.ID, path string, o Options) *Container {
	h.t.Helper()
	ct, err := h.r.TagCgroup(c, id, target(path), o)
	if err != nil {
		h.t.Fatalf("TagCgroup(%s, %d): %v", path, id, err)
	}
	h.checkpoint()
	return ct
}

// callerIn is a privileged process tagged with the container at path.
func (h *harness) callerIn(ct *Container, pid uint32) Caller {
	c := Caller{PID: pid, Start: uint64(pid) * 10, Privileged: true, Container: ct.ID, Cgroup: ct.Cgroups[0].Path}
	h.alive.set(c.PID, c.Start, true)
	h.checkpoint()
	return c
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	}
}
