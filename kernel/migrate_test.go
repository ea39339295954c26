package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// pinOlderShape replaces the pin of map name in pinDir with one of
// another shape, as a build before this one made it, holding entries.
func pinOlderShape(t *testing.T, pinDir string, ms ebpf.MapSpec, entries map[string][]byte) {
	t.Helper()
	ms.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(&ms)
	if err != nil {
		t.Fatalf("create %s in an older shape: %v", ms.Name, err)
	}
	defer m.Close()
	for k, v := range entries {
		if err := m.Update([]byte(k), v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(pinDir, ms.Name)
	if err := m.Pin(path + "_old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+"_old", path); err != nil {
		t.Fatal(err)
	}
}

// pinnedProgramMaps lists the maps the program of a pinned link uses.
func pinnedProgramMaps(t *testing.T, pinDir, prog string) []ebpf.MapID {
	t.Helper()
	p, err := ebpf.NewProgramFromID(pinnedLinkInfo(t, pinDir, prog).Program)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := pi.MapIDs()
	return ids
}

// Upgrades change the shape of maps that Load writes anew (more
// protected inodes, a longer configuration). Such a pin left by the
// build before is replaced, with its entries where they still fit, and
// every link with it, since the running programs use the old map. The
// control, without the replacement, is the refusal an upgrade met.
func TestLoadReplacesOutgrownPins(t *testing.T) {
	requireBPF(t)
	spec, _ := loadTestSpec(t)
	inodes := *spec.Maps[contidMapProtectedInodes]
	config := *spec.Maps[contidMapContidConfig]
	olderInodes := inodes
	olderInodes.MaxEntries = 16
	olderConfig := config
	olderConfig.ValueSize = 8
	key := make([]byte, inodes.KeySize)
	key[0] = 42
	for _, tc := range []struct {
		name    string
		replace bool
	}{
		{"replaced", true},
		{"control: not replaced, refused", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pinDir := testPinDir(t)
			b := loadTest(t, pinDir)
			before := pinnedLinkID(t, pinDir, contidProgContidAutotag)
			b.Close()
			pinOlderShape(t, pinDir, olderInodes, map[string][]byte{string(key): {1}})
			pinOlderShape(t, pinDir, olderConfig, map[string][]byte{"\x00\x00\x00\x00": make([]byte, 8)})
			was := replaceOutgrown
			replaceOutgrown = tc.replace
			t.Cleanup(func() { replaceOutgrown = was })

			b, err := Load(Options{PinDir: pinDir, Mode: testMode()})
			if !tc.replace {
				if err == nil {
					b.Close()
					t.Fatal("Load accepted pins of an older shape without replacing them")
				}
				if !errors.Is(err, ErrPinMismatch) {
					t.Fatalf("Load: %v, want ErrPinMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer b.Close()
			if got := b.Replaced(); !slices.Equal(got, []string{contidMapContidConfig, contidMapProtectedInodes}) {
				t.Errorf("Replaced() = %v", got)
			}
			if n := b.maps.ProtectedInodes.MaxEntries(); n != inodes.MaxEntries {
				t.Errorf("protected_inodes holds %d entries, want this build's %d", n, inodes.MaxEntries)
			}
			var v uint8
			if err := b.maps.ProtectedInodes.Lookup(key, &v); err != nil || v != 1 {
				t.Errorf("the older map's entry: %d, %v; want it copied", v, err)
			}
			after := pinnedLinkID(t, pinDir, contidProgContidAutotag)
			if after == before {
				t.Fatalf("autotag's link %d kept: its program still uses the replaced contid_config", before)
			}
			// The running program uses the new configuration map.
			used := pinnedProgramMaps(t, pinDir, contidProgContidAutotag)
			if !slices.Contains(used, mapID(t, b.maps.ContidConfig)) {
				t.Errorf("autotag's program uses maps %v, not the new contid_config %d", used, mapID(t, b.maps.ContidConfig))
			}
			b.Close()

			// The next start finds everything in shape: nothing is
			// replaced and the links stay.
			b2 := loadTest(t, pinDir)
			if got := b2.Replaced(); len(got) != 0 {
				t.Errorf("second Load replaced %v", got)
			}
			if again := pinnedLinkID(t, pinDir, contidProgContidAutotag); again != after {
				t.Errorf("second Load replaced autotag's link %d with %d", after, again)
			}
		})
	}
}
