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
// nothing in tracking mode, where no guard would read the entry.
func TestProtectFile(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	fd, err := unix.MemfdCreate("contid-test-protect", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "contid-test-protect")
	defer f.Close()
	if err := b.ProtectFile(f); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	var v uint8
	err = b.maps["protected_inodes"].Lookup(statKey(&st), &v)
	listed := err == nil
	if want := testMode() == ModeEnforcing; listed != want {
		t.Fatalf("%s mode: memfd inode %d listed = %v (%v), want %v", testMode(), st.Ino, listed, err, want)
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
		{"bpf allowed", Options{AllowBPF: true}, allowBPF},
		{"both allowed", Options{AllowBPF: true, AllowModules: true}, allowBPF | allowModules},
		{"modules allowed", Options{AllowModules: true}, allowModules},
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
			if err := b.maps["contid_config"].Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			if got != (configValue{MaxDepth: 5, Allow: tc.want}) {
				t.Fatalf("contid_config after Load = %+v, want MaxDepth 5, Allow %d", got, tc.want)
			}
			if err := b.SetMaxDepth(2); err != nil {
				t.Fatal(err)
			}
			if err := b.maps["contid_config"].Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			if got != (configValue{MaxDepth: 2, Allow: tc.want}) {
				t.Fatalf("contid_config after SetMaxDepth(2) = %+v, want MaxDepth 2, Allow %d", got, tc.want)
			}
		})
	}
}
