package dbus

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// origin is the process that opened a connection, as the kernel (peer to
// peer) or dbus-daemon (system bus) recorded it when it connected. The
// UID is the one fact no later exec, setuid program or reused PID can
// change: privilege is decided on it alone. The pidfd pins the connecting
// process itself, so whatever is read about the caller later (its cgroup,
// its container) is read from that process, or not at all.
type origin struct {
	uid uint32
	pid uint32
	// pidfd pins the connecting process: SO_PEERPIDFD, a bus's ProcessFD,
	// or pidfd_open at accept; -1 when it had exited already.
	pidfd int
	// start and image identify what the process was and ran when pinned.
	start uint64
	image execImage
	// changed: when pinned, the process's effective UID was no longer
	// the one it connected with (a setuid exec before the accept).
	changed bool
}

// errExited: the connecting process is gone, so nothing read from its PID
// now would be about it.
var errExited = errors.New("the process that opened this connection has exited since it connected")

// errExeced: the connecting process runs another program than when it
// connected.
var errExeced = errors.New("the process that opened this connection has executed another program since it connected")

// pinOrigin pins the process that connected: pidfd is the kernel's pin if
// the transport gave one (ownership passes to the origin), else -1 and the
// PID is opened here. The facts read from /proc are confirmed to belong to
// the pinned process by its pidfd still being alive afterwards. A process
// that is gone already gives an origin whose every request is refused.
func pinOrigin(uid, pid uint32, pidfd int) *origin {
	o := &origin{uid: uid, pid: pid, pidfd: pidfd}
	if o.pidfd < 0 {
		fd, err := unix.PidfdOpen(int(pid), 0)
		if err != nil {
			return o
		}
		o.pidfd = fd
	}
	st, err := readProcStat(pid)
	euid, uerr := readEffectiveUID(pid)
	// The effective UID the kernel recorded at connect is uid; a process
	// that has another now changed its credentials since, by a setuid
	// exec before contidd accepted: held to its new program, it would
	// reach polkit as that program's process. Its requests are refused.
	if err != nil || uerr != nil || euid != uid || !pidfdAlive(o.pidfd) {
		o.changed = err == nil && uerr == nil && euid != uid
		o.release()
		return o
	}
	o.start, o.image = st.start, st.image
	return o
}

// readEffectiveUID reads the effective UID of a process, the second of
// the Uid: line of /proc/PID/status.
func readEffectiveUID(pid uint32) (uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errGone, err)
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

// pinned reports whether the connecting process could be pinned.
func (o *origin) pinned() bool { return o.pidfd >= 0 }

func (o *origin) release() {
	if o.pidfd >= 0 {
		unix.Close(o.pidfd)
		o.pidfd = -1
	}
}

// execImage tells one exec of a process from the next. procfs keeps no
// exec counter, so it combines what an exec replaces: the executable file
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
type execImage struct {
	dev, ino                        uint64
	startCode, startStack, argStart uint64
}

// procStat is what one read of /proc/PID/stat (and a stat of its exe)
// tells about a process's identity.
type procStat struct {
	start uint64
	image execImage
}

func readProcStat(pid uint32) (procStat, error) {
	var st procStat
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return st, fmt.Errorf("%w: %v", errGone, err)
	}
	f, err := statFields(b)
	if err != nil {
		return st, err
	}
	// Fields of proc(5), numbered from 1: f[0] is field 3.
	vals := map[int]*uint64{22: &st.start, 26: &st.image.startCode, 28: &st.image.startStack, 48: &st.image.argStart}
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
		return st, fmt.Errorf("%w: executable of process %d: %v", errGone, pid, err)
	}
	st.image.dev, st.image.ino = exe.Dev, exe.Ino
	return st, nil
}

// statFields splits /proc/PID/stat after the command name, which may hold
// spaces and parentheses itself: everything after the last ')'.
func statFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed /proc stat line")
	}
	return strings.Fields(string(b[i+1:])), nil
}
