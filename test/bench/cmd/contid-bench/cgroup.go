package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroup2Root finds the cgroup2 mount from mountinfo: this host has the
// hybrid layout (cgroup2 at /sys/fs/cgroup/unified), others the unified
// one, so the path is never assumed.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mountinfo: fields up to " - ", then fstype source options.
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

// benchCgroup is a cgroup the bench created under the cgroup2 root.
type benchCgroup struct {
	root string // cgroup2 mount
	path string // absolute directory
}

// rel is the path relative to the cgroup2 root, as the D-Bus API takes it.
func (c benchCgroup) rel() string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(c.path, c.root), "/")
}

// id is the cgroup id the kernel uses (bpf_get_current_cgroup_id): the
// inode number of the cgroup2 directory.
func (c benchCgroup) id() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(c.path, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", c.path, err)
	}
	return st.Ino, nil
}

// makeCgroupTree creates a fresh top-level cgroup for this run and
// registers its removal (processes inside are killed by PID first).
func makeCgroupTree(name string) (benchCgroup, error) {
	root, err := cgroup2Root()
	if err != nil {
		return benchCgroup{}, err
	}
	p := filepath.Join(root, fmt.Sprintf("%s-%d", name, os.Getpid()))
	if err := os.Mkdir(p, 0o755); err != nil {
		return benchCgroup{}, fmt.Errorf("creating cgroup: %w", err)
	}
	cg := benchCgroup{root: root, path: p}
	cleanups.push("cgroup "+p, func() error { return removeCgroupTree(p) })
	return cg, nil
}

func (c benchCgroup) child(name string) (benchCgroup, error) {
	p := filepath.Join(c.path, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		return benchCgroup{}, fmt.Errorf("creating cgroup: %w", err)
	}
	return benchCgroup{root: c.root, path: p}, nil
}

// start runs cmd with its first process placed into the cgroup by
// CLONE_INTO_CGROUP, so not even the exec happens outside it.
func (c benchCgroup) start(cmd *exec.Cmd) error {
	fd, err := unix.Open(c.path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening cgroup: %w", err)
	}
	defer unix.Close(fd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s in %s: %w", cmd.Path, c.rel(), err)
	}
	return nil
}

func cgroupPIDs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// removeCgroupTree kills what is left inside by PID, then removes the
// directories deepest first; rmdir on a cgroup needs it empty of both.
func removeCgroupTree(top string) error {
	var dirs []string
	err := filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("walking %s: %w", top, err)
	}
	for _, d := range dirs {
		pids, _ := cgroupPIDs(d)
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for try := 0; try < 50; try++ {
			// A killed process leaves its cgroup a moment after the signal.
			if err = unix.Rmdir(dirs[i]); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}
