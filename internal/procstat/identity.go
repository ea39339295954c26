package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrGone: the process exited while it was looked at. Errors that wrap it
// come from a process whose /proc entry is gone or going.
var ErrGone = errors.New("process exited")

// Image tells one exec of a process from the next. procfs keeps no exec
// counter, so it combines what an exec replaces: the executable file
// (device and inode of /proc/PID/exe) and where the new image was mapped
// (start of code, of the stack, of the arguments), which address space
// randomisation draws afresh at every exec. That catches any exec of
// another file, and a re-exec of the same file whenever randomisation is
// on. It misses a re-exec of the very same file with randomisation turned
// off (personality ADDR_NO_RANDOMIZE): that runs the same program with the
// same credentials, because an exec that changes credentials (setuid,
// setgid, file capabilities) clears that personality flag and so is
// randomised. A process can move its argument area itself only with
// CAP_SYS_RESOURCE (PR_SET_MM), which makes its own requests fail, never
// succeed.
type Image struct {
	Dev, Ino                        uint64
	StartCode, StartStack, ArgStart uint64
}

// Identity is what one read of /proc/PID/stat (and a stat of its exe)
// tells about which process, and which exec of it, a PID names.
type Identity struct {
	Start uint64
	Image Image
}

// ReadIdentity reads pid's start time and exec image. Both the peer-to-
// peer server (when it pins a connector) and authorization (when a request
// comes) read it, and compare what they read.
func ReadIdentity(pid uint32) (Identity, error) {
	var st Identity
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return st, fmt.Errorf("%w: %v", ErrGone, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("malformed /proc stat line")
	}
	// comm (field 2) may hold spaces and parentheses: the fields after
	// the last ')' are numbered from 3.
	f := strings.Fields(string(b[i+1:]))
	vals := map[int]*uint64{22: &st.Start, 26: &st.Image.StartCode, 28: &st.Image.StartStack, 48: &st.Image.ArgStart}
	for field, dst := range vals {
		if field-3 >= len(f) {
			return st, fmt.Errorf("/proc/%d/stat has %d fields, want %d", pid, len(f)+2, field)
		}
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return st, fmt.Errorf("/proc/%d/stat field %d: %w", pid, field, err)
		}
		*dst = v
	}
	var exe unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.FormatUint(uint64(pid), 10)+"/exe", &exe); err != nil {
		return st, fmt.Errorf("%w: executable of process %d: %v", ErrGone, pid, err)
	}
	st.Image.Dev, st.Image.Ino = exe.Dev, exe.Ino
	return st, nil
}

// EffectiveUID reads the effective UID of a process, the second of the
// Uid: line of /proc/PID/status.
func EffectiveUID(pid uint32) (uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrGone, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		v, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: Uid: %w", pid, err)
		}
		return uint32(v), nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no Uid: line", pid)
}

// PidfdAlive confirms the process a pidfd names still runs, so facts read
// from /proc/PID after the pidfd was opened are the right process's.
func PidfdAlive(pidfd int) bool {
	return unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil
}
