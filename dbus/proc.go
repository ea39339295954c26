package dbus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/registry"
)

// capAuditControl is CAP_AUDIT_CONTROL's bit in the capability sets.
const capAuditControl = 30

// errGone: the process exited while we looked at it.
var errGone = errors.New("process exited")

// procStatus holds the /proc/<pid>/status facts authorization needs.
type procStatus struct {
	EffectiveUID uint32
	CapEff       uint64
	Threads      int
	PPID         uint32
}

func readStatus(pid uint32) (procStatus, error) {
	var st procStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("%w: %v", errGone, err)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			f := strings.Fields(v)
			if len(f) >= 2 {
				u, err := strconv.ParseUint(f[1], 10, 32)
				if err != nil {
					return st, fmt.Errorf("parse Uid: %w", err)
				}
				st.EffectiveUID = uint32(u)
				seen++
			}
		case "CapEff":
			c, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("parse CapEff: %w", err)
			}
			st.CapEff = c
			seen++
		case "Threads":
			n, err := strconv.Atoi(v)
			if err != nil {
				return st, fmt.Errorf("parse Threads: %w", err)
			}
			st.Threads = n
			seen++
		case "PPid":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return st, fmt.Errorf("parse PPid: %w", err)
			}
			st.PPID = uint32(n)
			seen++
		}
	}
	if seen < 4 {
		return st, fmt.Errorf("/proc/%d/status lacks Uid, CapEff, Threads or PPid", pid)
	}
	return st, nil
}

// startTime is field 22 of /proc/<pid>/stat, in clock ticks since boot:
// with the PID it names one process for good, across PID reuse.
func startTime(pid uint32) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errGone, err)
	}
	// comm (field 2) may contain spaces and parentheses: split after the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// sameUserNS reports whether pid lives in contidd's own user namespace
// (the initial one, for a system daemon).
func sameUserNS(pid uint32) (bool, error) {
	var self, other unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return false, err
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/user", pid), &other); err != nil {
		return false, fmt.Errorf("%w: %v", errGone, err)
	}
	return self.Dev == other.Dev && self.Ino == other.Ino, nil
}

// pidfdAlive confirms the process a pidfd names still runs, so facts read
// from /proc/<pid> after the pidfd was opened are the right process's.
func pidfdAlive(pidfd int) bool {
	return unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil
}

// pidOfPidfd reads the PID a pidfd refers to from its fdinfo.
func pidOfPidfd(pidfd int) (uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pidfd))
	if err != nil {
		return 0, fmt.Errorf("%w: not a pidfd: %v", registry.ErrInvalidArgs, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("%w: not a pidfd", registry.ErrInvalidArgs)
			}
			if n <= 0 {
				// -1: exited; 0: in a PID namespace we cannot see.
				return 0, fmt.Errorf("%w: the process behind the pidfd has exited or is not visible", registry.ErrInvalidArgs)
			}
			return uint32(n), nil
		}
	}
	return 0, fmt.Errorf("%w: file descriptor is not a pidfd", registry.ErrInvalidArgs)
}

// hasChildren reports whether pid has children, through
// /proc/<pid>/task/*/children (all threads, though a fresh process has one).
func hasChildren(pid uint32) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, fmt.Errorf("%w: %v", errGone, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		if len(bytes.TrimSpace(b)) > 0 {
			return true, nil
		}
	}
	return false, nil
}

func pidfdOpen(pid uint32) (int, error) { return unix.PidfdOpen(int(pid), 0) }

func closeFD(fd int) { _ = unix.Close(fd) }

// machineID is the host's machine ID, for Peer.GetMachineId.
func machineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if s := strings.TrimSpace(string(b)); len(s) == 32 {
				return s
			}
		}
	}
	return "00000000000000000000000000000000"
}
