package kernel

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

func TestLoadTracking(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	mode, reason := b.Enforcement()
	if mode != contid.ModeTracking {
		t.Fatalf("mode = %s (%s), want tracking", mode, reason)
	}
	t.Logf("mode %s: %s", mode, reason)
}

// ProtectFile lists an open file's inode for the file_open guard in
// enforcing mode (the VM tier runs this test so, and shows the guard
// refusing a tagged open of the audit spool through /proc/1/fd), and does
// nothing in tracking mode, where no guard would read the entry. The
// entry outlives a restart (a Load, which sweeps the directories), so the
// spool in systemd's store is never unguarded while the next contidd
// starts, and the next file listed replaces it.
func TestProtectFile(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	b := loadTest(t, pinDir)
	memfd := func(name string) (*os.File, protectedInode) {
		fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), name)
		t.Cleanup(func() { f.Close() })
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		return f, statKey(&st)
	}
	listed := func(b *BPF, k protectedInode) bool {
		var v uint8
		return b.maps.ProtectedInodes.Lookup(k, &v) == nil
	}
	enforcing := testMode() == ModeEnforcing
	first, firstKey := memfd("contid-test-first")
	if err := b.ProtectFile(first); err != nil {
		t.Fatal(err)
	}
	if got := listed(b, firstKey); got != enforcing {
		t.Fatalf("%s mode: the file is listed = %v, want %v", testMode(), got, enforcing)
	}
	again := loadTest(t, pinDir)
	if got := listed(again, firstKey); got != enforcing {
		t.Fatalf("%s mode, after a restart: the file is listed = %v, want %v", testMode(), got, enforcing)
	}
	second, secondKey := memfd("contid-test-second")
	if err := again.ProtectFile(second); err != nil {
		t.Fatal(err)
	}
	if listed(again, firstKey) || listed(again, secondKey) != enforcing {
		t.Fatalf("%s mode, a second file: first listed %v, second %v; want false, %v", testMode(), listed(again, firstKey), listed(again, secondKey), enforcing)
	}
}

// The exceptions of [Enforce] reach the guards through contid_config,
// which is pinned: each Load writes them afresh, so a restart without an
// exception takes it back, and SetMaxDepth leaves them as they are.
func TestLoadWritesExceptions(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	cases := []struct {
		name string
		opts Options
		want uint32
	}{
		{"bpf allowed", Options{AllowBPF: true}, uint32(contidAllowBitALLOW_BPF)},
		{"both allowed", Options{AllowBPF: true, AllowModules: true}, uint32(contidAllowBitALLOW_BPF | contidAllowBitALLOW_MODULES)},
		{"modules allowed", Options{AllowModules: true}, uint32(contidAllowBitALLOW_MODULES)},
		{"none after a restart without them", Options{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.PinDir, opts.Mode, opts.MaxDepth = pinDir, testMode(), 5
			b, err := Load(opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer b.Close()
			var got configValue
			if err := b.maps.ContidConfig.Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			if got != (configValue{MaxDepth: 5, Allow: tc.want}) {
				t.Fatalf("contid_config after Load = %+v, want MaxDepth 5, Allow %d", got, tc.want)
			}
			if err := b.SetMaxDepth(2); err != nil {
				t.Fatal(err)
			}
			if err := b.maps.ContidConfig.Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			if got != (configValue{MaxDepth: 2, Allow: tc.want}) {
				t.Fatalf("contid_config after SetMaxDepth(2) = %+v, want MaxDepth 2, Allow %d", got, tc.want)
			}
		})
	}
}
