package dbus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/p2p"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// fakeTracker is an in-memory kernel layer for unit tests of the API; the
// integration tests use the real one.
type fakeTracker struct {
	mu      sync.Mutex
	next    contid.ID
	claimed map[contid.ID]bool
	tags    map[uint64]contid.Tag
	pids    map[uint32]contid.ID // what task storage says of a PID
	// suppressed is what denial_budget would hold: each container's
	// count of refusals not recorded one by one.
	suppressed map[contid.ID]uint64
	// said is what denial_said would hold.
	said map[contid.ID]uint64
	// tasks is how many tasks the tag walk finds in each cgroup: none
	// unless a test says, as the fake's directories hold no processes.
	tasks map[uint64]int
}

func newFakeTracker() *fakeTracker {
	return &fakeTracker{next: 1, claimed: map[contid.ID]bool{}, tags: map[uint64]contid.Tag{}, pids: map[uint32]contid.ID{}, tasks: map[uint64]int{}}
}

func (f *fakeTracker) Enforcement() (contid.Mode, string) { return contid.ModeTracking, "fake" }
func (f *fakeTracker) AllocateID() (contid.ID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.claimed[f.next] {
		f.next++
	}
	f.claimed[f.next] = true
	return f.next, nil
}
func (f *fakeTracker) ClaimID(id contid.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.claimed[id] {
		return kernel.ErrIDTaken
	}
	f.claimed[id] = true
	return nil
}
func (f *fakeTracker) SetFloor(contid.ID) error { return nil }
func (f *fakeTracker) DenialsSuppressed() (map[contid.ID]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.suppressed), nil
}
func (f *fakeTracker) ForgetDenials(id contid.ID) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.suppressed[id]
	delete(f.suppressed, id)
	delete(f.said, id)
	return n, nil
}
func (f *fakeTracker) DenialsSaid() (map[contid.ID]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.said), nil
}
func (f *fakeTracker) NoteDenialsSaid(id contid.ID, said uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.said == nil {
		f.said = map[contid.ID]uint64{}
	}
	f.said[id] = said
	return nil
}
func (f *fakeTracker) TagCgroup(id uint64, t contid.Tag) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[id] = t
	return f.tasks[id], nil
}
func (f *fakeTracker) UntagCgroup(id uint64) error {
	f.mu.Lock()
	delete(f.tags, id)
	f.mu.Unlock()
	return nil
}
func (f *fakeTracker) ReleaseID(id contid.ID) error {
	f.mu.Lock()
	delete(f.claimed, id)
	f.mu.Unlock()
	return nil
}
func (f *fakeTracker) CgroupTag(id uint64) (contid.Tag, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tags[id]
	if !ok {
		return t, kernel.ErrNotTagged
	}
	return t, nil
}
func (f *fakeTracker) CgroupTags() (map[uint64]contid.Tag, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.tags), nil
}
func (f *fakeTracker) SetAutotagParents([]uint64) error { return nil }
func (f *fakeTracker) TagProcess(int, contid.Tag) error { return nil }
func (f *fakeTracker) ProcessID(pidfd int) (contid.ID, error) {
	pid, err := pidOfPidfd(pidfd)
	if err != nil {
		return 0, kernel.ErrNoProcess
	}
	return f.PIDID(pid)
}
func (f *fakeTracker) PIDID(pid uint32) (contid.ID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.pids[pid]; ok {
		return id, nil
	}
	return 0, kernel.ErrNotTagged
}
func (f *fakeTracker) Attribute(uint32, uint32, time.Time) (contid.ID, contid.Attribution, contid.Candidates, error) {
	return 0, contid.Unattributed, contid.Candidates{}, nil
}
func (f *fakeTracker) ReadEvent(ctx context.Context) (kernel.Event, error) {
	<-ctx.Done()
	return kernel.Event{}, ctx.Err()
}
func (f *fakeTracker) Close() error { return nil }

// fakeCgroups is a directory tree standing in for the cgroup2 mount; every
// process is in /caller.
type fakeCgroups struct{ root string }

func (c fakeCgroups) Root() string { return c.root }
func (c fakeCgroups) ID(rel string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(c.root, rel), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
func (c fakeCgroups) PathByID(id uint64) (string, error) {
	found := ""
	err := filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || found != "" {
			return err
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino == id {
			found = "/" + strings.TrimPrefix(strings.TrimPrefix(p, c.root), "/")
		}
		return nil
	})
	if err == nil && found == "" {
		err = fmt.Errorf("%w: %d in the fake", kernel.ErrNoSuchCgroup, id)
	}
	return found, err
}
func (c fakeCgroups) OfPID(uint32) (string, error) { return "/caller", nil }

type recordedOp struct {
	op     string
	chain  string
	err    error
	caller string // the caller's own container chain, for tag records
}

type fakeAuditor struct {
	mu  sync.Mutex
	ops []recordedOp
	// suppressed sums, per chain, the counts of unrecorded denials the
	// denial and summary records said.
	suppressed map[string]uint64
}

func (a *fakeAuditor) add(op string, chain contid.Chain, err error) error {
	return a.addFrom(op, nil, chain, err)
}
func (a *fakeAuditor) addFrom(op string, caller, chain contid.Chain, err error) error {
	a.mu.Lock()
	a.ops = append(a.ops, recordedOp{op, chain.String(), err, caller.String()})
	a.mu.Unlock()
	return nil
}
func (a *fakeAuditor) RecordTag(_ uint32, caller, chain, _ contid.Chain, _ contid.Labels, err error) error {
	return a.addFrom("tag", caller, chain, err)
}
func (a *fakeAuditor) RecordCreate(_ uint32, chain contid.Chain, _ contid.Labels) error {
	return a.add("create", chain, nil)
}
func (a *fakeAuditor) RecordDrop(chain contid.Chain, _ contid.Labels) error {
	return a.add("drop", chain, nil)
}
func (a *fakeAuditor) RecordDenial(chain contid.Chain, _ contid.Labels, _ uint32, _ string, n uint64) error {
	a.count(chain, n)
	return a.add("deny", chain, nil)
}
func (a *fakeAuditor) RecordDenialsSuppressed(chain contid.Chain, _ contid.Labels, n uint64) error {
	a.count(chain, n)
	return a.add("suppressed", chain, nil)
}
func (a *fakeAuditor) count(chain contid.Chain, n uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.suppressed == nil {
		a.suppressed = map[string]uint64{}
	}
	a.suppressed[chain.String()] += n
}
func (a *fakeAuditor) RecordGrantUse(chain contid.Chain, _ contid.Labels, _ uint32, _ string) error {
	return a.add("allow", chain, nil)
}

type fakeEmitter struct {
	mu      sync.Mutex
	signals []string
}

func (e *fakeEmitter) emit(_ godbus.ObjectPath, iface, member string, _ ...any) {
	e.mu.Lock()
	e.signals = append(e.signals, iface+"."+member)
	e.mu.Unlock()
}

func newTestManager(t testing.TB) (*Manager, *fakeAuditor, *fakeEmitter, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"caller", "target"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tr := newFakeTracker()
	reg, err := registry.Open(t.TempDir(), tr, registry.Config{OwnerAlive: func(uint32, uint64) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	m := NewManager(Config{Registry: reg, Tracker: tr, Cgroups: fakeCgroups{root}, Version: "test"})
	a, em := &fakeAuditor{}, &fakeEmitter{}
	m.SetAuditor(a)
	m.addEmitter(em)
	return m, a, em, root
}

func call(path godbus.ObjectPath, iface, member string, body ...any) *godbus.Message {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:   godbus.MakeVariant(path),
		godbus.FieldMember: godbus.MakeVariant(member),
	}, Body: body}
	if iface != "" {
		msg.Headers[godbus.FieldInterface] = godbus.MakeVariant(iface)
	}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	return msg
}

// selfPeer is a peer-to-peer connection the test process opened.
func selfPeer(t testing.TB) *peer {
	o := p2p.Pin(uint32(os.Geteuid()), uint32(os.Getpid()), -1)
	if !o.Pinned() {
		t.Fatal("cannot pin the test process")
	}
	t.Cleanup(o.Release)
	return &peer{origin: originFromP2P(*o)}
}

// The read-only surface works for anyone, without root, and answers
// malformed calls with the standard errors.
func TestDispatchReadOnly(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	p := selfPeer(t)
	tests := []struct {
		name    string
		msg     *godbus.Message
		errName string
		check   func([]any) bool
	}{
		{"ListContainers", call(client.ManagerPath, client.ManagerInterface, "ListContainers"), "", func(b []any) bool { return len(b[0].([]client.ContainerRow)) == 0 }},
		{"GetAll", call(client.ManagerPath, ifaceProperties, "GetAll", client.ManagerInterface), "", func(b []any) bool {
			props := b[0].(map[string]godbus.Variant)
			return len(props) == 11 && props["Version"].Value() == "test" && props["EventsAmbiguous"].Value() == uint64(0) && props["AuditStream"].Value() == "none" && props["Enforcement"].Value() == "tracking"
		}},
		{"Get", call(client.ManagerPath, ifaceProperties, "Get", client.ManagerInterface, "Containers"), "", func(b []any) bool { return b[0].(godbus.Variant).Value() == uint32(0) }},
		{"Get without interface name", call(client.ManagerPath, "", "Get", client.ManagerInterface, "Version"), "", func(b []any) bool { return b[0].(godbus.Variant).Value() == "test" }},
		{"Introspect", call(client.ManagerPath, ifaceIntrospection, "Introspect"), "", func(b []any) bool {
			return strings.Contains(b[0].(string), `<method name="TagProcess">`)
		}},
		{"unknown property", call(client.ManagerPath, ifaceProperties, "Get", client.ManagerInterface, "Nope"), client.NameUnknownProperty, nil},
		{"Set", call(client.ManagerPath, ifaceProperties, "Set", client.ManagerInterface, "Version", godbus.MakeVariant("x")), client.NamePropertyReadOnly, nil},
		{"unknown object", call("/org/contid1/nope", client.ManagerInterface, "ListContainers"), client.NameUnknownObject, nil},
		{"missing container", call("/org/contid1/container/5", client.ContainerInterface, "ListProcesses"), client.NameNoSuchContainer, nil},
		{"unknown method", call(client.ManagerPath, client.ManagerInterface, "Frobnicate"), client.NameUnknownMethod, nil},
		{"unknown interface", call(client.ManagerPath, "org.example.X", "Y"), client.NameUnknownInterface, nil},
		{"wrong signature", call(client.ManagerPath, client.ManagerInterface, "GetContainer", "5"), client.NameInvalidArgs, nil},
		{"missing arguments", call(client.ManagerPath, client.ManagerInterface, "TagCgroup"), client.NameInvalidArgs, nil},
		{"GetContainer 0", call(client.ManagerPath, client.ManagerInterface, "GetContainer", uint64(0)), client.NameInvalidArgs, nil},
		{"GetContainer absent", call(client.ManagerPath, client.ManagerInterface, "GetContainer", uint64(9)), client.NameNoSuchContainer, nil},
		{"TagProcess without fd", call(client.ManagerPath, client.ManagerInterface, "TagProcess", godbus.UnixFDIndex(0), uint64(0), map[string]godbus.Variant{}), client.NameInvalidArgs, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, derr := m.dispatch(p, tt.msg)
			if tt.errName != "" {
				if derr == nil || derr.Name != tt.errName {
					t.Fatalf("want %s, got %v %v", tt.errName, body, derr)
				}
				return
			}
			if derr != nil {
				t.Fatalf("unexpected error %s: %v", derr.Name, derr.Body)
			}
			if !tt.check(body) {
				t.Fatalf("unexpected reply %#v", body)
			}
		})
	}
}

// Every tag attempt is audited, granted or refused, and a new container is
// announced. Which branch runs depends on whether the test process runs as
// UID 0; both are asserted.
func TestTagAuditedAndAnnounced(t *testing.T) {
	m, a, em, _ := newTestManager(t)
	privileged := os.Geteuid() == 0
	body, derr := m.dispatch(selfPeer(t), call(client.ManagerPath, client.ManagerInterface, "TagCgroup", "/target", uint64(0), map[string]godbus.Variant{"Name": godbus.MakeVariant("t")}))
	if !privileged {
		if derr == nil || derr.Name != client.NameAccessDenied {
			t.Fatalf("unprivileged TagCgroup: want AccessDenied, got %v %v", body, derr)
		}
		if len(a.ops) != 1 || a.ops[0].op != "tag" || !errors.Is(a.ops[0].err, contid.ErrAccessDenied) {
			t.Fatalf("refusal not audited: %+v", a.ops)
		}
		return
	}
	if derr != nil {
		t.Fatalf("TagCgroup: %s %v", derr.Name, derr.Body)
	}
	id := body[0].(uint64)
	want := []recordedOp{{"tag", "1", nil, ""}, {"create", "1", nil, ""}}
	if id != 1 || len(a.ops) != 2 || a.ops[0] != want[0] || a.ops[1] != want[1] {
		t.Fatalf("id %d, audit trail %+v, want %+v", id, a.ops, want)
	}
	m.flushSignals()
	if strings.Join(em.signals, " ") != "org.contid1.Manager.ContainerNew org.freedesktop.DBus.Properties.PropertiesChanged" {
		t.Fatalf("signals %v", em.signals)
	}
	// Tagging the caller's own cgroup is refused and audited as refused.
	_, derr = m.dispatch(selfPeer(t), call(client.ManagerPath, client.ManagerInterface, "TagCgroup", "/caller", uint64(0), map[string]godbus.Variant{}))
	if derr == nil || derr.Name != client.NameNotDescendant {
		t.Fatalf("self-tag: want NotDescendant, got %v", derr)
	}
	if last := a.ops[len(a.ops)-1]; last.op != "tag" || !errors.Is(last.err, contid.ErrNotDescendant) {
		t.Fatalf("self-tag refusal not audited: %+v", a.ops)
	}
}

// A tag attempt made from inside a container is recorded with that
// container, so `journalctl AUDIT_CALLER_CONTAINER_ID=N` shows what the
// container tried; from outside, no caller container is named.
func TestRefusalNamesCallersContainer(t *testing.T) {
	tests := []struct {
		name       string
		callerID   contid.ID
		wantCaller string
	}{
		{"caller in container 7", 7, "7"},
		{"caller outside containers", contid.Unset, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, a, _, _ := newTestManager(t)
			if tt.callerID != contid.Unset {
				tr := m.cfg.Tracker.(*fakeTracker)
				tr.mu.Lock()
				tr.pids[uint32(os.Getpid())] = tt.callerID
				tr.mu.Unlock()
			}
			// The caller's own cgroup is never a target it may tag.
			_, derr := m.dispatch(selfPeer(t), call(client.ManagerPath, client.ManagerInterface, "TagCgroup", "/caller", uint64(0), map[string]godbus.Variant{}))
			if derr == nil {
				t.Fatal("tagging the caller's own cgroup was granted")
			}
			if len(a.ops) == 0 {
				t.Fatal("refusal not audited")
			}
			last := a.ops[len(a.ops)-1]
			if last.op != "tag" || last.err == nil || last.caller != tt.wantCaller {
				t.Fatalf("audited %+v, want a refused tag with caller container %q", last, tt.wantCaller)
			}
		})
	}
}

// Every descriptor a bus call carries is closed after it, wherever the
// body names it, and each only once.
func TestCloseMessageFDs(t *testing.T) {
	var fds []int
	for i := 0; i < 4; i++ {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[1])
		fds = append(fds, p[0])
	}
	msg := &godbus.Message{Body: []any{
		godbus.UnixFD(fds[0]),
		[]godbus.UnixFD{godbus.UnixFD(fds[1]), godbus.UnixFD(fds[1])},
		map[string]godbus.Variant{"x": godbus.MakeVariant(godbus.UnixFD(fds[2]))},
		godbus.MakeVariant([]any{"s", godbus.UnixFD(fds[3])}),
	}}
	closeMessageFDs(msg)
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("descriptor %d still open (%v)", fd, err)
		}
	}
}
