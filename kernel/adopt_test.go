package kernel

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// hidePins mounts a fresh bpffs over pinDir, as an untagged root could
// while contidd is stopped: the pins are still there, out of sight, and
// the set they hold keeps running.
func hidePins(t *testing.T, pinDir string) {
	t.Helper()
	if err := unix.Mount("bpf", pinDir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpffs over %s: %v", pinDir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(pinDir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", pinDir, err)
		}
	})
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// setAdoption switches adoption for one test.
func setAdoption(t *testing.T, on bool) {
	was := adoptHidden
	adoptHidden = on
	t.Cleanup(func() { adoptHidden = was })
}

// Blinding on restart: with contidd stopped and its pins hidden by a
// mount, the next Load must find the still loaded set by ID and carry on
// with its maps, tags and links. The control loads without adoption and
// gets what Load did before: a second, empty set, the tag out of sight.
func TestLoadAdoptsHiddenSet(t *testing.T) {
	requireBPF(t)
	cases := []struct {
		name string
		// other loads a set in a pin directory of its own first, which
		// stays loaded and must be ignored.
		other bool
		// secondSet loads a second set with adoption off after hiding,
		// then hides that one too: two sets claim the pin directory.
		secondSet bool
		adopt     bool
		// wantAdopted: the tag, map and links carried on.
		wantAdopted  bool
		wantAmbiguos bool
	}{
		{name: "hidden pins, adopted", adopt: true, wantAdopted: true},
		{name: "hidden pins, another pin directory's set beside, ours adopted", other: true, adopt: true, wantAdopted: true},
		{name: "control: adoption off, a fresh empty set", adopt: false},
		{name: "two sets claim the pin directory, refused", secondSet: true, adopt: true, wantAmbiguos: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var otherID ebpf.MapID
			if tc.other {
				ob := loadTest(t, testPinDir(t))
				otherID = mapID(t, ob.maps.CgroupTags)
			}
			pinDir := testPinDir(t)
			cg := newTestCgroup(t, nil, "adopt")
			b := loadTest(t, pinDir)
			x := mustAllocate(t, b)
			mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})
			oldMap := mapID(t, b.maps.CgroupTags)
			oldLink := pinnedLinkID(t, pinDir, contidProgContidFork)
			b.Close()

			hidePins(t, pinDir)
			if tc.secondSet {
				setAdoption(t, false)
				loadTest(t, pinDir).Close()
				hidePins(t, pinDir)
			}
			setAdoption(t, tc.adopt)

			b, err := Load(Options{PinDir: pinDir, Mode: testMode()})
			if tc.wantAmbiguos {
				if err == nil {
					b.Close()
					t.Fatal("Load started beside two sets that claim its pin directory")
				}
				if !errors.Is(err, errAdoptAmbiguous) {
					t.Fatalf("Load: %v, want errAdoptAmbiguous", err)
				}
				t.Logf("Load: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer b.Close()
			newMap := mapID(t, b.maps.CgroupTags)
			tag, tagErr := b.CgroupTag(cg.id)
			maps, links := b.Adopted()
			t.Logf("before: map %d, fork link %d; after: map %d, tag %s (%v), adopted %d maps, %d links",
				oldMap, oldLink, newMap, tag.Chain, tagErr, maps, links)
			if newMap == otherID {
				t.Errorf("Load took the set of another pin directory (map %d)", otherID)
			}
			if !tc.wantAdopted {
				// Without adoption the old set is lost to Load: this is
				// the blinding adoption has to prevent.
				if newMap == oldMap || tag.ID() == x || maps != 0 || links != 0 {
					t.Errorf("control: map %d (old %d), tag %s, adopted %d/%d; want a fresh empty set", newMap, oldMap, tag.Chain, maps, links)
				}
				return
			}
			if newMap != oldMap {
				t.Errorf("Load uses map %d, not the hidden set's %d", newMap, oldMap)
			}
			if tagErr != nil || tag.ID() != x {
				t.Errorf("after adoption, cgroup tag = %s (%v), want %d", tag.Chain, tagErr, x)
			}
			// Every map of the object, the ones only user space uses
			// included; every link the mode attaches.
			spec, progs := loadTestSpec(t)
			wantLinks := len(trackingAttachments(progs))
			if testMode() == ModeEnforcing {
				wantLinks += len(enforcingAttachments(progs))
			}
			if maps != len(spec.Maps) || links != wantLinks {
				t.Errorf("Adopted() = %d maps, %d links, want %d and %d", maps, links, len(spec.Maps), wantLinks)
			}
			if got := pinnedLinkID(t, pinDir, contidProgContidFork); got != oldLink {
				t.Errorf("fork link is %d, not the hidden set's %d: attached twice", got, oldLink)
			}
			// The set still tags: a fork in the cgroup is attributed.
			pair := startInWithPID(t, cg)
			wantID(t, b, "child forked after adoption", pair.child, x)
			// The ID counter came along: no ID is handed out twice.
			if next := mustAllocate(t, b); next <= x {
				t.Errorf("AllocateID after adoption = %d, want above %d", next, x)
			}
		})
	}
}

// A loaded program with one of contid's names but no contid_identity (a
// set of a build before it, or a look-alike) is never adopted: Load
// creates a fresh set beside it.
func TestLoadLeavesSetWithoutIdentity(t *testing.T) {
	requireBPF(t)
	sl := lookalikeFork(t)
	defer sl.Close()
	info, err := sl.Info()
	if err != nil {
		t.Fatal(err)
	}

	pinDir := testPinDir(t)
	b := loadTest(t, pinDir)
	if maps, links := b.Adopted(); maps != 0 || links != 0 {
		t.Errorf("Adopted() = %d maps, %d links from a set without identity, want none", maps, links)
	}
	if got := pinnedLinkID(t, pinDir, contidProgContidFork); got == info.ID {
		t.Errorf("Load pinned the look-alike's link %d", got)
	}
}
