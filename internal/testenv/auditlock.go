package testenv

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/kernel/audit"
)

// auditStateLock is the file whose lock stands for the host's kernel audit
// enabled flag, which every test process shares. It also keeps the flag
// the host had before the first of the tests that hold it.
const auditStateLock = "/run/contid-test-audit.lock"

// HoldAuditing switches kernel auditing on for t and holds it on until t
// ends; with off, t holds the flag alone and may switch auditing off. The
// host gets its original flag back when the last test that holds it ends.
//
// `go test ./...` runs the packages side by side. A test that switched
// auditing off, or that gave back the flag it had found (off, before
// another package's test switched it on), blinded the other packages'
// tests to the system calls made meanwhile: one exec in 10,000 was never
// audited, with nothing counted lost.
func HoldAuditing(t testing.TB, ctl *audit.Control, off bool) {
	flag := enabledFlag{ctl}
	t.Helper()
	f, err := os.OpenFile(auditStateLock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("audit state lock: %v", err)
	}
	fail := func(format string, args ...any) {
		f.Close()
		t.Helper()
		t.Fatalf(format, args...)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		fail("audit state lock: %v", err)
	}
	if _, ok, err := originalFlag(f); err != nil {
		fail("audit state lock: %v", err)
	} else if !ok {
		cur, err := flag.get()
		if err != nil {
			fail("read the audit enabled flag: %v", err)
		}
		if _, err := f.WriteAt([]byte(strconv.FormatUint(uint64(cur), 10)), 0); err != nil {
			fail("audit state lock: %v", err)
		}
	}
	if !off {
		// Shared from here: other tests that need auditing on run
		// beside this one, one that switches it off waits.
		if err := flock(f, unix.LOCK_SH); err != nil {
			fail("audit state lock: %v", err)
		}
		if err := flag.set(1); err != nil {
			fail("switch auditing on: %v", err)
		}
	}
	t.Cleanup(func() {
		defer f.Close()
		if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
			return // others still hold it; the last one restores
		} else if err != nil {
			t.Errorf("audit state lock: %v", err)
			return
		}
		orig, ok, err := originalFlag(f)
		if err != nil || !ok {
			t.Errorf("audit state lock: no original flag recorded (%v)", err)
			return
		}
		if err := flag.set(orig); err != nil {
			t.Errorf("restore the audit enabled flag %d: %v", orig, err)
		}
		if err := f.Truncate(0); err != nil {
			t.Errorf("audit state lock: %v", err)
		}
	})
}

// originalFlag reads the flag recorded by the first holder, if any.
func originalFlag(f *os.File) (uint32, bool, error) {
	b := make([]byte, 16)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, err
	}
	s := strings.TrimSpace(string(b[:n]))
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false, err
	}
	return uint32(v), true, nil
}

// enabledFlag is the kernel's audit enabled flag.
type enabledFlag struct{ ctl *audit.Control }

func (e enabledFlag) get() (uint32, error) {
	st, err := e.ctl.Status()
	if err != nil {
		return 0, err
	}
	return st.Enabled, nil
}

func (e enabledFlag) set(v uint32) error {
	return e.ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusEnabled, Enabled: v})
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
