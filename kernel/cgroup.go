package kernel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrNoCgroup2: no cgroup2 file system is mounted.
	ErrNoCgroup2 = errors.New("no cgroup2 mount found in /proc/self/mountinfo")
	// ErrBadCgroupPath: a cgroup path is not absolute, clean and free of "..".
	ErrBadCgroupPath = errors.New("invalid cgroup path")
	// ErrNoSuchCgroup: no cgroup has that path or ID.
	ErrNoSuchCgroup = errors.New("no such cgroup")
)

// Cgroup2Root finds where the cgroup2 hierarchy is mounted. Hybrid hosts
// mount it below /sys/fs/cgroup (here /sys/fs/cgroup/unified), so the path
// is never assumed.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("cgroup2 root: %w", err)
	}
	defer f.Close()
	return cgroup2RootFrom(bufio.NewScanner(f))
}

func cgroup2RootFrom(sc *bufio.Scanner) (string, error) {
	for sc.Scan() {
		// "36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) == 0 || fs[0] != "cgroup2" {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 || fields[3] != "/" {
			// A bind mount of a sub-cgroup does not show the whole tree.
			continue
		}
		return unescapeMountinfo(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("cgroup2 root: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CleanCgroupPath validates a path relative to the cgroup2 root, as the
// D-Bus API takes it ("/machine.slice/x.scope"), and returns its clean form.
// It refuses anything that could leave the hierarchy.
func CleanCgroupPath(p string) (string, error) {
	if p == "" || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: %q is not absolute", ErrBadCgroupPath, p)
	}
	if strings.ContainsAny(p, "\x00\n") {
		return "", fmt.Errorf("%w: %q contains NUL or newline", ErrBadCgroupPath, p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." || elem == "." {
			return "", fmt.Errorf("%w: %q contains %q", ErrBadCgroupPath, p, elem)
		}
	}
	return path.Clean(p), nil
}

// CgroupID returns the ID of a cgroup given relative to the cgroup2 root:
// the kernfs inode number, which is what bpf_get_current_cgroup_id and the
// kernel programs see. It is read as the 8-byte file handle.
func CgroupID(rel string) (uint64, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return 0, err
	}
	return CgroupIDAt(root, rel)
}

// CgroupIDAt is CgroupID for a caller that already knows the cgroup2 root
// (contidd finds it once at start; reading mountinfo per call cost
// TagCgroup about 65 µs).
func CgroupIDAt(root, rel string) (uint64, error) {
	clean, err := CleanCgroupPath(rel)
	if err != nil {
		return 0, err
	}
	full := filepath.Join(root, clean)
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, full, 0)
	if errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("%w: %s", ErrNoSuchCgroup, clean)
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", clean, err)
	}
	b := h.Bytes()
	if len(b) != 8 {
		return 0, fmt.Errorf("cgroup id of %s: unexpected %d-byte handle", clean, len(b))
	}
	return binary.NativeEndian.Uint64(b), nil
}

// fileIDKernfs is the kernfs file handle type (FILEID_KERNFS).
const fileIDKernfs = 0xfe

// CgroupPathByID turns a cgroup ID back into its path relative to the
// cgroup2 root. It needs CAP_DAC_READ_SEARCH (open_by_handle_at).
func CgroupPathByID(id uint64) (string, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return "", err
	}
	mnt, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open cgroup2 root: %w", err)
	}
	defer unix.Close(mnt)

	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, id)
	fd, err := unix.OpenByHandleAt(mnt, unix.NewFileHandle(fileIDKernfs, b), unix.O_PATH|unix.O_CLOEXEC)
	if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
		return "", fmt.Errorf("%w: id %d", ErrNoSuchCgroup, id)
	}
	if err != nil {
		return "", fmt.Errorf("cgroup path of id %d: %w", id, err)
	}
	defer unix.Close(fd)

	full, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("cgroup path of id %d: %w", id, err)
	}
	rel, err := filepath.Rel(root, full)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("cgroup path of id %d: %s is outside %s", id, full, root)
	}
	return path.Clean("/" + rel), nil
}

// CgroupOfPID reads a process's cgroup2 path (the "0::" line of
// /proc/PID/cgroup), relative to the cgroup2 root.
func CgroupOfPID(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return "", fmt.Errorf("%w: pid %d", ErrNoProcess, pid)
	}
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return cgroupFromProcFile(string(data))
}

func cgroupFromProcFile(data string) (string, error) {
	for _, line := range strings.Split(data, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return strings.TrimSuffix(p, " (deleted)"), nil
		}
	}
	return "", ErrNoCgroup2
}
