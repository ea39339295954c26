package testenv

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// auditStateLock is the file whose lock stands for the host's kernel audit
// configuration, which every test process shares.
const auditStateLock = "/run/contid-test-audit.lock"

// LockAuditState holds the host's audit configuration until t ends:
// shared for a test that needs kernel auditing on, exclusive for one that
// switches it off. `go test ./...` runs the packages side by side, and a
// test that switched auditing off for a moment blinded another package's
// test to the system calls made in that moment: one exec in 10,000 was
// never audited, with nothing counted lost.
func LockAuditState(t testing.TB, exclusive bool) {
	t.Helper()
	f, err := os.OpenFile(auditStateLock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("audit state lock: %v", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("audit state lock: %v", err)
	}
	// Closing the file releases the lock.
	t.Cleanup(func() { f.Close() })
}
