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
