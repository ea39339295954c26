package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel/audit"
)

// positionChildEnv makes the test binary run TestPositionFullDisk's body
// in the private mount namespace its parent made.
const positionChildEnv = "CONTID_POSITION_FULL_DISK"

// TestPositionFullDisk: the state directory is a small file system that
// fills up (a tagged container writing to the same one can do that).
// The audit position is still saved, and reads back as saved. The
// control is a plain new file on that full file system, as the position
// was written before, which the disk refuses: the next start would have
// taken the stale position and counted every event since as unread.
func TestPositionFullDisk(t *testing.T) {
	testenv.RequireRoot(t)
	if os.Getenv(positionChildEnv) == "" {
		cmd := exec.Command("unshare", "--mount", "--propagation", "private",
			os.Args[0], "-test.run=^TestPositionFullDisk$", "-test.v")
		cmd.Env = append(os.Environ(), positionChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil {
			t.Fatalf("in a private mount namespace: %v", err)
		}
		return
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	save := func(serial uint32) error {
		b, _ := json.Marshal(audit.Position{Boot: "b", Serial: serial, Time: time.Unix(1700000000, 0)})
		return writePosition(dir, b)
	}
	for serial := uint32(1); serial <= 2; serial++ {
		if err := save(serial); err != nil {
			t.Fatalf("save %d on a free disk: %v", serial, err)
		}
	}
	// Fill the disk.
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'x'}, 4096)
	for {
		if _, err := fill.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	fill.Close()
	if err := os.WriteFile(filepath.Join(dir, "control"), []byte(`{"serial":3}`), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("control: a new file on the full disk: %v, want ENOSPC", err)
	}
	for serial := uint32(3); serial <= 5; serial++ {
		if err := save(serial); err != nil {
			t.Fatalf("save %d on the full disk: %v", serial, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, positionFile))
		if err != nil {
			t.Fatal(err)
		}
		var p audit.Position
		if err := json.Unmarshal(b, &p); err != nil || p.Serial != serial {
			t.Fatalf("read back %+v (%v), want serial %d", p, err, serial)
		}
	}
}
