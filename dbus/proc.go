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

	"github.com/contid/contid"
	"github.com/contid/contid/internal/procstat"
	"github.com/contid/contid/kernel"
)

// errGone: the process exited while we looked at it.
var errGone = procstat.ErrGone

// procStatus holds the /proc/<pid>/status facts a TagProcess target is
// checked for.
type procStatus struct {
	Threads int
	PPID    uint32
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
	if seen < 2 {
		return st, fmt.Errorf("/proc/%d/status lacks Threads or PPid", pid)
	}
	return st, nil
}

// startTime identifies a process across PID reuse (procstat.StartTicks).
func startTime(pid uint32) (uint64, error) {
	t, err := procstat.StartTicks(int(pid))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %v", errGone, err)
	}
	return t, err
}

// pidfdAlive confirms the process a pidfd names still runs, so facts read
// from /proc/<pid> after the pidfd was opened are the right process's.
func pidfdAlive(pidfd int) bool { return procstat.PidfdAlive(pidfd) }

// pidOfPidfd is kernel.PIDOfPidfd for a caller's descriptor: any failure
// is the caller's bad argument.
func pidOfPidfd(pidfd int) (uint32, error) {
	pid, err := kernel.PIDOfPidfd(pidfd)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", contid.ErrInvalidArgs, err)
	}
	return uint32(pid), nil
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

func dupFD(fd int) (int, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%w: descriptor %d: %v", contid.ErrInvalidArgs, fd, err)
	}
	return d, nil
}

// cgroupPopulated reads the populated flag of a cgroup directory's
// cgroup.events. It reads with plain system calls into a stack buffer:
// os.ReadFile would allocate a buffer per call and register the (pollable)
// kernfs file with the runtime's epoll, which the exit check paid for every
// container every pass.
func cgroupPopulated(dir string) (bool, error) {
	fd, err := unix.Open(dir+"/cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	// "populated 0\nfrozen 0\n": far below one buffer.
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return false, err
	}
	return bytes.Contains(buf[:n], []byte("populated 1")), nil
}
