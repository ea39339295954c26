package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid"
)

func TestValidateUUID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"", true},
		{"5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", true},
		{"017f22e2-79b0-7cc3-98c4-dc0c0c07398f", true}, // version 7
		{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", true}, // version 1
		{"00000000-0000-0000-0000-000000000001", true},
		{"00000000-0000-0000-0000-000000000000", false}, // nil
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", false}, // max
		{"5F0C7A8E-9B1D-4E2F-8A3B-6C7D8E9F0A1B", false},
		{"{5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b}", false},
		{"urn:uuid:5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", false},
		{"5f0c7a8e9b1d4e2f8a3b6c7d8e9f0a1b", false},
		{"5f0c7a8e-9b1d4-e2f-8a3b-6c7d8e9f0a1b", false},
		{"5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1", false},
		{"5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1bc", false},
		{"5f0c7a8g-9b1d-4e2f-8a3b-6c7d8e9f0a1b", false},
		{"5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1\n", false},
		{"5f0c7a8e 9b1d 4e2f 8a3b 6c7d8e9f0a1b", false},
		{"tag", false},
	}
	for _, tt := range tests {
		err := ValidateUUID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateUUID(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, contid.ErrInvalidArgs) || !strings.Contains(err.Error(), "UUID")) {
			t.Errorf("ValidateUUID(%q): error %q does not wrap InvalidArgs or say UUID", tt.in, err)
		}
	}
	if err := ValidateUUID("5F0C7A8E-9B1D-4E2F-8A3B-6C7D8E9F0A1B"); err == nil || !strings.Contains(err.Error(), "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b") {
		t.Errorf("an upper-case UUID's error does not give the spelling to use: %v", err)
	}
}

// NewUUID draws RFC 9562 version 4 UUIDs in canonical text.
func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		u := NewUUID()
		if err := ValidateUUID(u); err != nil {
			t.Fatalf("NewUUID() = %q: %v", u, err)
		}
		if u[14] != '4' {
			t.Fatalf("NewUUID() = %q is not version 4", u)
		}
		if !strings.ContainsRune("89ab", rune(u[19])) {
			t.Fatalf("NewUUID() = %q is not of RFC 9562's variant", u)
		}
		if seen[u] {
			t.Fatalf("NewUUID() repeated %q", u)
		}
		seen[u] = true
	}
}

// A caller's UUID is kept as given; without one, every way a record is
// made draws a fresh one. Either survives a reopen.
func TestUUIDGivenAtCreation(t *testing.T) {
	const given = "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"
	tests := []struct {
		name   string
		create func(h *harness) (*Container, error)
		want   string // "" for a drawn one
	}{
		{"cgroup, drawn", func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/drawn.scope"), Options{})
		}, ""},
		{"cgroup, given", func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/given.scope"), Options{UUID: given})
		}, given},
		{"cgroup with explicit ID, given", func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 4000, target("/machine.slice/explicit.scope"), Options{UUID: given})
		}, given},
		{"process, drawn", func(h *harness) (*Container, error) {
			return h.r.TagProcess(orchestrator, 0, ProcessTarget{PID: 300, Start: 9, Cgroup: "/system.slice/orch.service", PIDFD: 3}, Options{})
		}, ""},
		{"process, given", func(h *harness) (*Container, error) {
			return h.r.TagProcess(orchestrator, 0, ProcessTarget{PID: 300, Start: 9, Cgroup: "/system.slice/orch.service", PIDFD: 3}, Options{UUID: given})
		}, given},
		{"autotag", func(h *harness) (*Container, error) {
			c, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{700}, Flags: contid.FlagAutotag}, Cgroup{Path: "/machine.slice/auto.scope", ID: 4242})
			return c, err
		}, ""},
	}
	drawn := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			c, err := tt.create(h)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want != "" && c.UUID != tt.want:
				t.Fatalf("UUID %q, want the given %q", c.UUID, tt.want)
			case tt.want == "" && (ValidateUUID(c.UUID) != nil || c.UUID == "" || c.UUID[14] != '4'):
				t.Fatalf("drawn UUID %q is not a version 4 UUID", c.UUID)
			}
			if tt.want == "" {
				if other, ok := drawn[c.UUID]; ok {
					t.Fatalf("UUID %q drawn again (first for %s)", c.UUID, other)
				}
				drawn[c.UUID] = tt.name
			}
			h.reopen()
			got, err := h.r.Get(c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.UUID != c.UUID {
				t.Fatalf("after reopen: UUID %q, want %q", got.UUID, c.UUID)
			}
		})
	}
}

// The UUID option is checked before anything happens: a refused one
// reaches neither the kernel nor the records, and burns no ID.
func TestTagUUIDOption(t *testing.T) {
	const live = "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"
	const gone = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
	setup := func(t *testing.T) *harness {
		h := newHarness(t, Config{})
		h.mustTag(orchestrator, 0, "/machine.slice/live.scope", Options{UUID: live})
		ex := h.mustTag(orchestrator, 0, "/machine.slice/gone.scope", Options{UUID: gone})
		if _, err := h.r.MarkExited(ex.ID); err != nil {
			t.Fatal(err)
		}
		h.checkpoint()
		return h
	}
	cgroup := func(o Options) func(h *harness) (*Container, error) {
		return func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/new.scope"), o)
		}
	}
	tests := []struct {
		name string
		do   func(h *harness) (*Container, error)
		want error
	}{
		{"bad text", cgroup(Options{UUID: "not-a-uuid"}), contid.ErrInvalidArgs},
		{"upper case", cgroup(Options{UUID: strings.ToUpper(live)}), contid.ErrInvalidArgs},
		{"nil", cgroup(Options{UUID: nilUUID}), contid.ErrInvalidArgs},
		{"max", cgroup(Options{UUID: maxUUID}), contid.ErrInvalidArgs},
		{"held by a living container", cgroup(Options{UUID: live}), contid.ErrUUIDInUse},
		{"held by a living container, explicit ID", func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 5000, target("/machine.slice/new.scope"), Options{UUID: live})
		}, contid.ErrUUIDInUse},
		{"held by a living container, process", func(h *harness) (*Container, error) {
			return h.r.TagProcess(orchestrator, 0, ProcessTarget{PID: 300, Start: 9, Cgroup: "/system.slice/orch.service", PIDFD: 3}, Options{UUID: live})
		}, contid.ErrUUIDInUse},
		{"held by an exited container", cgroup(Options{UUID: gone}), nil},
		{"fresh", cgroup(Options{UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t)
			hwm := h.r.HighWater()
			c, err := tt.do(h)
			wantErr(t, err, tt.want)
			if tt.want != nil {
				if h.k.tagged != h.kernelTags || len(h.r.List()) != h.records || h.r.HighWater() != hwm {
					t.Fatal("a refused UUID reached the kernel or the records, or took an ID")
				}
				if errors.Is(tt.want, contid.ErrUUIDInUse) && !strings.Contains(err.Error(), live) {
					t.Errorf("the error does not name the UUID: %v", err)
				}
				return
			}
			again, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/new.scope"), Options{UUID: c.UUID})
			if err != nil || again.ID != c.ID {
				t.Fatalf("the owner's repeat of the call: %v, %+v; want container %d again", err, again, c.ID)
			}
			if _, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/new.scope"), Options{UUID: NewUUID()}); !errors.Is(err, contid.ErrAlreadyTagged) {
				t.Fatalf("the same call with another UUID: %v, want AlreadyTagged", err)
			}
		})
	}
}

// A container the kernel tagged keeps the UUID it was given then: naming
// it with that UUID is fine, with another is AlreadyTagged.
func TestNameKeepsAutotagUUID(t *testing.T) {
	tests := []struct {
		name string
		uuid func(own string) string
		want error
	}{
		{"none", func(string) string { return "" }, nil},
		{"its own", func(own string) string { return own }, nil},
		{"another", func(string) string { return NewUUID() }, contid.ErrAlreadyTagged},
		{"invalid", func(string) string { return "x" }, contid.ErrInvalidArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			c, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{700}, Flags: contid.FlagAutotag}, Cgroup{Path: "/machine.slice/libpod-ab.scope", ID: 4242})
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.r.Name(orchestrator, 700, Options{Name: "pweb", UUID: tt.uuid(c.UUID)}, "")
			wantErr(t, err, tt.want)
			after, _ := h.r.Get(700)
			if after.UUID != c.UUID {
				t.Fatalf("UUID changed from %q to %q", c.UUID, after.UUID)
			}
		})
	}
}

// State written before records had UUIDs still loads: each record gets a
// fresh UUID, written back at once, so it is the same after the next
// reopen; and a record an older contidd rewrote without its UUID keeps
// the one it had.
func TestOldStateGetsUUIDs(t *testing.T) {
	const kept = "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"
	tests := []struct {
		name     string
		snapshot []string
		journal  []string
		want     map[contid.ID]string // "" for a fresh one
	}{
		{"format 2 snapshot and journal", []string{
			`{"op":"snapshot","version":2,"hwm":8}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"name":"old","manager":"api","cgroups":[{"path":"/machine.slice/old.scope","id":77}],"state":"active","created":1764300000000000000,"owner_pid":100,"owner_start":5000}}`,
			`{"op":"put","rec":{"id":8,"chain":[8],"state":"exited","created":1764300000000000000,"exited":1764300001000000000}}`,
		}, []string{
			`{"op":"put","rec":{"id":9,"chain":[9,7],"cgroups":[{"path":"/machine.slice/old.scope/inner","id":79}],"state":"active","created":1764300002000000000}}`,
			`{"op":"close"}`,
		}, map[contid.ID]string{7: "", 8: "", 9: ""}},
		{"format 1 snapshot", []string{
			`{"op":"snapshot","version":1,"hwm":3}`,
			`{"op":"put","rec":{"id":3,"chain":[3],"state":"active","created":1764300000000000000}}`,
		}, nil, map[contid.ID]string{3: ""}},
		{"rewritten by an older contidd", []string{
			`{"op":"snapshot","version":2,"hwm":7}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"uuid":"` + kept + `","state":"active","created":1764300000000000000}}`,
		}, []string{
			`{"op":"put","rec":{"id":7,"chain":[7],"name":"renamed","state":"active","created":1764300000000000000}}`,
			`{"op":"close"}`,
		}, map[contid.ID]string{7: kept}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, lines []string) {
				if lines == nil {
					return
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(snapshotFile, tt.snapshot)
			write(journalFile, tt.journal)
			h := newHarness(t, Config{})
			h.r.Close()
			h.dir = dir
			h.open()
			if w := h.r.Warnings(); len(w) != 0 {
				t.Fatalf("warnings loading old state: %q", w)
			}
			first := map[contid.ID]string{}
			for id, want := range tt.want {
				c, err := h.r.Get(id)
				if err != nil {
					t.Fatal(err)
				}
				if want != "" && c.UUID != want {
					t.Fatalf("container %d: UUID %q, want the recorded %q", id, c.UUID, want)
				}
				if ValidateUUID(c.UUID) != nil || c.UUID == "" {
					t.Fatalf("container %d: UUID %q after load", id, c.UUID)
				}
				first[id] = c.UUID
			}
			// Written back by Open's compaction, not only held in memory.
			snap, err := os.ReadFile(filepath.Join(dir, snapshotFile))
			if err != nil {
				t.Fatal(err)
			}
			for id, u := range first {
				if !strings.Contains(string(snap), fmt.Sprintf(`"uuid":%q`, u)) {
					t.Fatalf("container %d's UUID %s is not in the snapshot:\n%s", id, u, snap)
				}
			}
			h.reopen()
			for id, u := range first {
				c, err := h.r.Get(id)
				if err != nil {
					t.Fatal(err)
				}
				if c.UUID != u {
					t.Fatalf("container %d: UUID %q after a second reopen, was %q", id, c.UUID, u)
				}
			}
		})
	}
}

// A state file holding a malformed UUID is damaged: that line is skipped
// and kept aside like any other damaged line.
func TestStateWithBadUUID(t *testing.T) {
	dir := t.TempDir()
	lines := `{"op":"snapshot","version":2,"hwm":2}` + "\n" +
		`{"op":"put","rec":{"id":1,"chain":[1],"uuid":"00000000-0000-0000-0000-000000000000","state":"active","created":1}}` + "\n" +
		`{"op":"put","rec":{"id":2,"chain":[2],"uuid":"5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b","state":"active","created":1}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{})
	h.r.Close()
	h.dir = dir
	h.open()
	if w := h.r.Warnings(); len(w) != 1 || !strings.Contains(w[0], "UUID") {
		t.Fatalf("warnings %q, want one about the UUID", w)
	}
	if _, err := h.r.Get(1); err == nil {
		t.Fatal("the record with the nil UUID was loaded")
	}
	if c, err := h.r.Get(2); err != nil || c.UUID != "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b" {
		t.Fatalf("the good record: %+v, %v", c, err)
	}
}
