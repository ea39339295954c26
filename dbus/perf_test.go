package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/procstat"
	"github.com/contid/contid/registry"
)

// A system-bus caller is the process behind its connection only if that
// process started no later than the connection appeared: a PID that was
// freed and handed to a later process is refused, whoever asks through
// the connection. Its credentials, once fetched, are kept for its later
// calls (the connection here cannot make a bus call, so a second call
// proves the cache).
func TestBusCallerPinnedByAppearance(t *testing.T) {
	self := uint32(os.Getpid())
	st, err := procstat.ReadIdentity(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		seen uint64 // when the connection appeared, in clock ticks since boot
		ok   bool
	}{
		{"connection opened by this process", st.Start + 1, true},
		{"same tick", st.Start, true},
		{"PID now held by a process that started later", st.Start - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _, _ := newTestManager(t)
			bus := &godbus.Conn{} // unconnected: any bus call would fail
			bp := newBusPeers()
			m.buses = map[*godbus.Conn]*busPeers{bus: bp}
			bp.names[":1.7"] = &busPeer{seen: tt.seen, o: &origin{uid: 0, pid: self, pidfd: -1}}
			for call := 0; call < 2; call++ {
				ci, err := m.identify(context.Background(), &peer{bus: bus, sender: ":1.7"})
				if !tt.ok {
					if !errors.Is(err, contid.ErrAccessDenied) || !strings.Contains(err.Error(), "started after") {
						t.Fatalf("identify = %v, want AccessDenied for a later process", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if ci.PID != self || !ci.Privileged || ci.Cgroup != "/caller" {
					t.Fatalf("identified as %+v", ci.Caller)
				}
				ci.close()
			}
		})
	}
}

// NameOwnerChanged of unique names is recorded as godbus reads it; well
// known names and other signals are not.
func TestBusPeersFollowNames(t *testing.T) {
	bp := newBusPeers()
	signal := func(sender, iface, member string, body ...any) *godbus.Message {
		return &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldSender:    godbus.MakeVariant(sender),
			godbus.FieldInterface: godbus.MakeVariant(iface),
			godbus.FieldMember:    godbus.MakeVariant(member),
		}, Body: body}
	}
	before := bootTicks()
	bp.observe(signal(ifaceBus, ifaceBus, "NameOwnerChanged", ":1.9", "", ":1.9"))
	bp.observe(signal(ifaceBus, ifaceBus, "NameOwnerChanged", "org.example.Name", "", ":1.9"))
	bp.observe(signal(":1.5", ifaceBus, "NameOwnerChanged", ":1.10", "", ":1.10")) // not from the bus
	if _, _, seen, known := bp.lookup(":1.9"); known || seen < before || seen > bootTicks() {
		t.Fatalf(":1.9 seen at %d (known %v), want between %d and now", seen, known, before)
	}
	if len(bp.names) != 1 {
		t.Fatalf("tracked %v, want only :1.9", bp.names)
	}
	bp.observe(signal(ifaceBus, ifaceBus, "NameOwnerChanged", ":1.9", ":1.9", ""))
	if len(bp.names) != 0 {
		t.Fatalf("a name that went is still tracked: %v", bp.names)
	}
}

// A bus that hands out the caller's pidfd (ProcessFD) pins it exactly; a
// pidfd that names another process than the PID is not used.
func TestOriginFromCredentials(t *testing.T) {
	self := uint32(os.Getpid())
	open := func() godbus.UnixFD {
		fd, err := unix.PidfdOpen(int(self), 0)
		if err != nil {
			t.Fatal(err)
		}
		return godbus.UnixFD(fd)
	}
	tests := []struct {
		name      string
		creds     map[string]godbus.Variant
		wantPidfd bool
		wantErr   bool
	}{
		{"dbus-daemon 1.14", map[string]godbus.Variant{"UnixUserID": godbus.MakeVariant(uint32(0)), "ProcessID": godbus.MakeVariant(self)}, false, false},
		{"with ProcessFD", map[string]godbus.Variant{"UnixUserID": godbus.MakeVariant(uint32(0)), "ProcessID": godbus.MakeVariant(self), "ProcessFD": godbus.MakeVariant(open())}, true, false},
		{"ProcessFD of another PID", map[string]godbus.Variant{"UnixUserID": godbus.MakeVariant(uint32(0)), "ProcessID": godbus.MakeVariant(uint32(1)), "ProcessFD": godbus.MakeVariant(open())}, false, false},
		{"no UID", map[string]godbus.Variant{"ProcessID": godbus.MakeVariant(self), "ProcessFD": godbus.MakeVariant(open())}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, dup, err := originFromCredentials(tt.creds)
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if got := o.pidfd >= 0 && dup >= 0; got != tt.wantPidfd {
				t.Fatalf("pinned by pidfd: %v (%d, %d), want %v", got, o.pidfd, dup, tt.wantPidfd)
			}
			if dup >= 0 {
				if pid, err := pidOfPidfd(dup); err != nil || pid != self {
					t.Fatalf("duplicate names %d, %v", pid, err)
				}
				unix.Close(dup)
			}
			o.release()
		})
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
