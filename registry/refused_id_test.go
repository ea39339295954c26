package registry

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/contid/contid"
)

// The kernel hands out an autotag's ID at mkdir, before contidd sees the
// cgroup. When Adopt refuses the cgroup's path (a Unicode noncharacter,
// or bytes that are not UTF-8: root in a nesting container names the
// directory), the ID is in use all the same: the cgroup's processes carry
// it, and their events are journaled under it. DESIGN.md: "IDs are never
// handed out twice on a host". After a clean shutdown and a reboot (a
// fresh kernel allocator, whose floor is the registry's high-water mark)
// the next container must not get that ID again.
//
// The control is the same sequence with a path Adopt records: the record
// raises the high-water mark and the ID is not given again.
func TestRefusedAdoptIDNotReusedAfterReboot(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		refused    bool
	}{
		{"noncharacter", "/machine.slice/pods/p-\uFFFE", true},
		{"not-utf8", "/machine.slice/pods/p-\xff", true},
		{"control", "/machine.slice/pods/p-plain", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			first := h.mustTag(orchestrator, 0, "/machine.slice/first.scope", Options{})
			// The kernel's autotag at mkdir: an ID from its allocator.
			id, err := h.k.AllocateID()
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = h.r.Adopt(contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}, Cgroup{Path: tc.path, ID: 987654})
			if (err != nil) != tc.refused {
				t.Fatalf("Adopt(%q) = %v, want refused %v", tc.path, err, tc.refused)
			}
			if tc.refused {
				// Each start adopts the kernel's tags again: the ID is
				// written down once.
				for range 3 {
					h.r.Adopt(contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}, Cgroup{Path: tc.path, ID: 987654})
				}
				b, _ := os.ReadFile(filepath.Join(h.dir, journalFile))
				if n := bytes.Count(b, []byte(`"op":"prune"`)); n > 1 {
					t.Errorf("%d prune lines after 4 refused adoptions of one cgroup, want at most 1", n)
				}
			}
			// Clean shutdown, reboot: the kernel's maps are gone.
			if err := h.r.Close(); err != nil {
				t.Fatal(err)
			}
			h.k = newFakeKernel()
			h.open()
			next := h.mustTag(orchestrator, 0, "/machine.slice/next.scope", Options{})
			t.Logf("first container %d, kernel autotag %d (path %q refused: %v), first after reboot %d", first.ID, id, tc.path, err != nil, next.ID)
			if next.ID <= id {
				t.Errorf("after a reboot container %d was given, but the kernel had given ID %d to %q in the boot before", next.ID, id, tc.path)
			}
		})
	}
}

// The same after an upgrade: a record an older contidd wrote for a path
// with a noncharacter is skipped at load (TestNoncharacterRecordSkippedAtLoad),
// and with it went the only trace of its ID. The control loads the
// record unedited.
func TestSkippedRecordIDNotReusedAfterReboot(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit bool
	}{{"noncharacter", true}, {"control", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
			old := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{})
			if err := h.r.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.edit {
				editStateFiles(t, h.dir, "/machine.slice/b.scope", "/machine.slice/b\uFFFE.scope")
			}
			h.k = newFakeKernel() // a reboot
			h.open()
			next := h.mustTag(orchestrator, 0, "/machine.slice/next.scope", Options{})
			t.Logf("old container %d, first after the upgrade and reboot %d", old.ID, next.ID)
			if next.ID <= old.ID {
				t.Errorf("container %d was given again after the upgrade", next.ID)
			}
		})
	}
}

func editStateFiles(t *testing.T, dir, from, to string) {
	t.Helper()
	edited := 0
	for _, name := range []string{snapshotFile, journalFile} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		edited += bytes.Count(b, []byte(from))
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(from), []byte(to)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if edited == 0 {
		t.Fatal("no state file holds the path to edit")
	}
}

// The refusal's text goes back in the D-Bus error's message, a string
// sd-bus checks as it checks any other: the path is quoted with %q, which
// escapes what is not printable, so the message holds no noncharacter
// and stays valid UTF-8 whatever the path held. The control is the raw
// path, which sd-bus would refuse.
func TestRefusalTextValidForSdBus(t *testing.T) {
	sdbusValid := func(s string) bool {
		if !utf8.ValidString(s) {
			return false
		}
		for _, r := range s {
			if isNoncharacter(r) {
				return false
			}
		}
		return true
	}
	for _, p := range []string{
		"/a/p-\uFFFE", "/a/\uFDD0", "/a/\U0010FFFF", "p-\uFFFF", "/a/\uFFFE/../b", "/a/\xff\uFFFE",
		"/" + strings.Repeat("\uFFFE", 100), "/a/" + strings.Repeat("x", 77) + "\uFFFE\uFFFE",
	} {
		err := ValidateCgroupPath(p)
		if err == nil {
			t.Fatalf("%q accepted", p)
		}
		if !sdbusValid(err.Error()) {
			t.Errorf("ValidateCgroupPath(%q) = %q, which sd-bus refuses", p, err)
		}
	}
	if sdbusValid("/a/p-\uFFFE") {
		t.Fatal("control: the raw path passes the check")
	}
}
