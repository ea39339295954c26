// Command contid-vmprobe performs the few tamper attempts of the VM tier
// that no stock tool in the guest can make: register as the audit daemon,
// ptrace a process, steal its file descriptors through pidfd_getfd, start
// a child directly in another cgroup with clone3(CLONE_INTO_CGROUP),
// unmount a filesystem with the errno shown (umount(8) words EPERM as
// "must be superuser"), truncate a file by path (truncate(1) opens it and
// calls ftruncate) or by a read-only open with O_TRUNC, mount a tmpfs by mount(2) with the errno shown
// (mount(8) words EPERM as "permission denied") and by the new mount API
// (bookworm's mount(8) knows only mount(2)), change a mount's propagation,
// move a mount by mount(2) and back, remount with the flags in force, load
// a BPF program without
// an object file (or make another process load one, by ptrace), shut a
// filesystem down, and load a kernel module by each of the two system
// calls (modprobe picks one); and refused signals to a process in a loop,
// counted by errno (a shell's kill builtin is too slow to flood with, and
// its failures cannot be counted by errno).
//
// Each subcommand tries one operation and reports the outcome on one line:
// "ok ..." with exit status 0, or "denied: <errno text>" with exit status
// 1, so the suite's checks read the same for every attack.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "audit-setpid":
		err = auditSetPID()
	case "ptrace":
		err = withPID(args, ptraceAttach)
	case "pidfd-getfd":
		err = withPID(args, pidfdGetfd)
	case "umount":
		if len(args) != 1 {
			usage()
		}
		if err = unix.Unmount(args[0], 0); err == nil {
			fmt.Printf("ok: unmounted %s\n", args[0])
		}
	case "truncate":
		if len(args) != 1 {
			usage()
		}
		if err = unix.Truncate(args[0], 0); err == nil {
			fmt.Printf("ok: truncated %s by path\n", args[0])
		}
	case "open-trunc":
		if len(args) != 1 {
			usage()
		}
		var fd int
		if fd, err = unix.Open(args[0], unix.O_RDONLY|unix.O_TRUNC, 0); err == nil {
			unix.Close(fd)
			fmt.Printf("ok: opened %s read-only with O_TRUNC\n", args[0])
		}
	case "mount":
		if len(args) != 1 {
			usage()
		}
		if err = unix.Mount("none", args[0], "tmpfs", 0, ""); err == nil {
			fmt.Printf("ok: mounted a tmpfs on %s by mount(2)\n", args[0])
		}
	case "move-mount":
		if len(args) != 1 {
			usage()
		}
		err = moveMountTmpfs(args[0])
	case "make-shared":
		if len(args) != 1 {
			usage()
		}
		if err = unix.Mount("", args[0], "", unix.MS_SHARED, ""); err == nil {
			fmt.Printf("ok: made %s shared by mount(2)\n", args[0])
		}
	case "move-and-back":
		if len(args) != 2 {
			usage()
		}
		err = moveAndBack(args[0], args[1])
	case "remount":
		if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "bind") {
			usage()
		}
		err = remountAsIs(args[0], len(args) == 2)
	case "fspick-reconfigure":
		if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "ro") {
			usage()
		}
		err = fspickReconfigure(args[0], len(args) == 2)
	case "setattr":
		if len(args) != 2 || (args[1] != "ro" && args[1] != "shared" && args[1] != "private") {
			usage()
		}
		err = setattr(args[0], args[1])
	case "cgroup1-agent":
		if len(args) != 4 || (args[0] != "mount" && args[0] != "fsconfig") {
			usage()
		}
		err = cgroup1Agent(args[0], args[1], args[2], args[3])
	case "fsfreeze":
		secs := 2
		if len(args) == 2 {
			secs, err = strconv.Atoi(args[1])
		}
		if len(args) < 1 || len(args) > 2 || err != nil {
			usage()
		}
		err = fsfreeze(args[0], secs)
	case "fs-shutdown-invalid":
		if len(args) != 1 {
			usage()
		}
		err = fsShutdownInvalid(args[0])
	case "clone-into-cgroup":
		if len(args) < 2 {
			usage()
		}
		err = cloneIntoCgroup(args[0], args[1:])
	case "bpf-prog-load":
		err = bpfProgLoad()
	case "inject-bpf-prog-load":
		err = withPID(args, injectBPFProgLoad)
	case "fs-shutdown":
		if len(args) != 1 {
			usage()
		}
		err = fsShutdown(args[0])
	case "kill-loop":
		if len(args) != 2 {
			usage()
		}
		err = killLoop(args[0], args[1])
	case "init-module", "finit-module":
		if len(args) != 1 {
			usage()
		}
		err = loadModule(os.Args[1], args[0])
	default:
		usage()
	}
	if err != nil {
		fmt.Printf("denied: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: contid-vmprobe audit-setpid
       contid-vmprobe ptrace PID
       contid-vmprobe pidfd-getfd PID
       contid-vmprobe clone-into-cgroup CGROUP-DIR PROGRAM [ARG...]
       contid-vmprobe umount PATH
       contid-vmprobe truncate|open-trunc PATH
       contid-vmprobe mount|move-mount PATH
       contid-vmprobe make-shared PATH
       contid-vmprobe move-and-back FROM TO
       contid-vmprobe remount PATH [bind]
       contid-vmprobe fspick-reconfigure PATH [ro]
       contid-vmprobe setattr PATH ro|shared|private
       contid-vmprobe fsfreeze PATH [SECONDS]
       contid-vmprobe fs-shutdown-invalid PATH
       contid-vmprobe cgroup1-agent mount|fsconfig DIR NAME AGENT
       contid-vmprobe bpf-prog-load
       contid-vmprobe inject-bpf-prog-load PID
       contid-vmprobe fs-shutdown PATH
       contid-vmprobe kill-loop PID N|SECONDSs
       contid-vmprobe init-module|finit-module MODULE.ko`)
	os.Exit(2)
}

func withPID(args []string, f func(int) error) error {
	if len(args) != 1 {
		usage()
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("bad pid %q: %w", args[0], err)
	}
	return f(pid)
}

// auditSetPID makes this process the kernel's audit daemon, which would let
// it swallow every record that auditd should have logged, then unregisters.
func auditSetPID() error {
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		return fmt.Errorf("audit netlink: %w", err)
	}
	if err := c.SetPID(libaudit.WaitForReply); err != nil {
		c.Close()
		return fmt.Errorf("set audit pid: %w", err)
	}
	// The kernel acknowledged: from now on every record comes to this
	// socket, so no status query could be read reliably (ENOBUFS). Close
	// unregisters (pid 0), restoring the state we found.
	if err := c.Close(); err != nil {
		return fmt.Errorf("unregister: %w", err)
	}
	fmt.Printf("ok: registered as the audit daemon (pid %d), then unregistered\n", os.Getpid())
	return nil
}

func ptraceAttach(pid int) error {
	if err := unix.PtraceAttach(pid); err != nil {
		return fmt.Errorf("ptrace attach %d: %w", pid, err)
	}
	// The attach is the privilege under test. Detaching is tidiness: it
	// needs the tracee in a ptrace-stop, which a multi-threaded Go daemon
	// may leave again before we ask (ESRCH); exiting detaches in any case.
	var ws unix.WaitStatus
	detach := "detached"
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		detach = fmt.Sprintf("not waited for (%v); detached on exit", err)
	} else if err := unix.PtraceDetach(pid); err != nil {
		detach = fmt.Sprintf("detach failed (%v); detached on exit", err)
	}
	fmt.Printf("ok: attached to %d, %s\n", pid, detach)
	return nil
}

// pidfdGetfd tries to copy the target's open descriptors: contidd's BPF map
// and link fds are as good as the pins to an attacker.
func pidfdGetfd(pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var last error
	for fd := 3; fd < 128; fd++ {
		got, err := unix.PidfdGetfd(pidfd, fd, 0)
		if errors.Is(err, unix.EBADF) {
			continue
		}
		if err != nil {
			last = err
			break
		}
		target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(got))
		unix.Close(got)
		fmt.Printf("ok: copied fd %d of %d (%s)\n", fd, pid, target)
		return nil
	}
	if last == nil {
		last = unix.EBADF
	}
	return fmt.Errorf("pidfd_getfd %d: %w", pid, last)
}

// moveMountTmpfs attaches a fresh tmpfs on target by fsopen, fsmount and
// move_mount(2), the calls of the new mount API.
func moveMountTmpfs(target string) error {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("fsconfig create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount onto %s: %w", target, err)
	}
	fmt.Printf("ok: mounted a tmpfs on %s by move_mount\n", target)
	return nil
}

// moveAndBack moves the mount at from to to by mount(2) with MS_MOVE,
// the old API's move, and back again, so a success leaves things as they
// were.
func moveAndBack(from, to string) error {
	if err := unix.Mount(from, to, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	if err := unix.Mount(to, from, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s back to %s: %w", to, from, err)
	}
	fmt.Printf("ok: moved %s to %s and back by mount(2)\n", from, to)
	return nil
}

// The statfs(2) flags that are also mount(2) flags with the same values.
// ST_RELATIME is not: its value is MS_BIND's, which would make the
// remount a bind remount.
const remountFlags = unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC |
	unix.ST_SYNCHRONOUS | unix.ST_MANDLOCK | unix.ST_NOATIME | unix.ST_NODIRATIME

// remountAsIs remounts the filesystem under path (bind: only that mount)
// with the flags already in force: what a read-only remount would pass
// through, without changing anything when it succeeds.
func remountAsIs(path string, bind bool) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	flags := uintptr(unix.MS_REMOUNT) | uintptr(st.Flags)&remountFlags
	if st.Flags&unix.ST_RELATIME != 0 {
		flags |= unix.MS_RELATIME
	}
	kind := "remounted"
	if bind {
		flags |= unix.MS_BIND
		kind = "bind-remounted"
	}
	if err := unix.Mount("", path, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", path, err)
	}
	fmt.Printf("ok: %s %s with its flags (%#x)\n", kind, path, flags)
	return nil
}

// cloneIntoCgroup starts program with clone3(CLONE_INTO_CGROUP), so the
// child is born in dir without ever passing through cgroup.procs.
func cloneIntoCgroup(dir string, argv []string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer unix.Close(fd)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("clone3 into %s: %w", dir, err)
	}
	fmt.Printf("ok: child %d ran in %s\n", cmd.Process.Pid, dir)
	return nil
}

// progLoadAttr is the head of union bpf_attr for BPF_PROG_LOAD, as far as
// this load needs it.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

// bpfProgLoad loads the smallest socket filter ("r0 = 0; exit") with one
// bpf(2) call, so that the command the guard refuses is the only one made
// (a library would probe the kernel with other loads first).
func bpfProgLoad() error {
	insns := []uint64{
		0xb7, // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
		0x95, // BPF_JMP | BPF_EXIT
	}
	license := []byte("GPL\x00")
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.progName[:], "contid_vm_probe")
	// The verifier returns EAGAIN when a signal interrupts it, and the Go
	// runtime's preemption signal can; that is no answer from the guard,
	// which refuses with EPERM, so the load is tried again.
	var fd uintptr
	var errno syscall.Errno
	for attempt := 0; attempt < 100; attempt++ {
		fd, _, errno = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != unix.EAGAIN {
			break
		}
	}
	// attr holds the slices' addresses as integers, which keep nothing
	// alive.
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return fmt.Errorf("bpf(BPF_PROG_LOAD): %w", errno)
	}
	unix.Close(int(fd))
	fmt.Println("ok: loaded a socket filter program")
	return nil
}

// loadModule loads an uncompressed module image by init_module(2) (the
// image from memory) or finit_module(2) (from an open file).
func loadModule(how, path string) error {
	if how == "init-module" {
		image, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := unix.InitModule(image, ""); err != nil {
			return fmt.Errorf("init_module %s: %w", path, err)
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		defer f.Close()
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
			return fmt.Errorf("finit_module %s: %w", path, err)
		}
	}
	fmt.Printf("ok: loaded %s by %s\n", path, how)
	return nil
}

// fspickReconfigure reconfigures the superblock of the mount at path by
// fspick(2) and fsconfig(FSCONFIG_CMD_RECONFIGURE), the new mount API's
// remount, which never passes through mount(2). As is, or read-only for a
// moment (then back to read-write), reported by statfs.
func fspickReconfigure(path string, ro bool) error {
	fd, err := unix.Fspick(unix.AT_FDCWD, path, unix.FSPICK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fspick %s: %w", path, err)
	}
	defer unix.Close(fd)
	if ro {
		if err := unix.FsconfigSetFlag(fd, "ro"); err != nil {
			return fmt.Errorf("fsconfig ro %s: %w", path, err)
		}
	}
	if err := unix.FsconfigReconfigure(fd); err != nil {
		return fmt.Errorf("fsconfig reconfigure %s: %w", path, err)
	}
	if !ro {
		fmt.Printf("ok: reconfigured the superblock of %s as is by fspick/fsconfig\n", path)
		return nil
	}
	var st unix.Statfs_t
	_ = unix.Statfs(path, &st)
	rdonly := st.Flags&unix.ST_RDONLY != 0
	back, err := unix.Fspick(unix.AT_FDCWD, path, unix.FSPICK_CLOEXEC)
	if err == nil {
		if err = unix.FsconfigSetFlag(back, "rw"); err == nil {
			err = unix.FsconfigReconfigure(back)
		}
		unix.Close(back)
	}
	fmt.Printf("ok: superblock of %s reconfigured read-only by fspick/fsconfig (statfs ST_RDONLY=%v); back to rw: %v\n", path, rdonly, err)
	return nil
}

// setattr changes the mount at path by mount_setattr(2), which has no
// LSM hook: read-only for a moment (then cleared), or a propagation.
func setattr(path, what string) error {
	attr := unix.MountAttr{}
	switch what {
	case "ro":
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	case "shared":
		attr.Propagation = unix.MS_SHARED
	case "private":
		attr.Propagation = unix.MS_PRIVATE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, path, 0, &attr); err != nil {
		return fmt.Errorf("mount_setattr %s %s: %w", what, path, err)
	}
	if what != "ro" {
		fmt.Printf("ok: mount_setattr made %s %s\n", path, what)
		return nil
	}
	var st unix.Statfs_t
	_ = unix.Statfs(path, &st)
	err := unix.MountSetattr(unix.AT_FDCWD, path, 0, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
	fmt.Printf("ok: mount_setattr made the mount at %s read-only (statfs ST_RDONLY=%v); cleared: %v\n", path, st.Flags&unix.ST_RDONLY != 0, err)
	return nil
}

// fsfreeze freezes the filesystem that holds path (FIFREEZE), so every
// write to it waits, for secs seconds, then thaws it (FITHAW).
func fsfreeze(path string, secs int) error {
	const fifreeze, fithaw = 0xc0045877, 0xc0045878
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fifreeze, 0); e != 0 {
		return fmt.Errorf("FIFREEZE %s: %w", path, e)
	}
	time.Sleep(time.Duration(secs) * time.Second)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fithaw, 0)
	fmt.Printf("ok: froze the filesystem of %s for %d s (FIFREEZE); thawed: %v\n", path, secs, e)
	return nil
}

// fsShutdownInvalid makes the shutdown ioctl (EXT4_IOC_SHUTDOWN, the
// same number as XFS_IOC_GOINGDOWN) on the filesystem that holds path
// with flags no filesystem accepts: an LSM refuses it with EPERM before
// the filesystem looks; ext4 and xfs check CAP_SYS_ADMIN and then the
// flags, and answer EINVAL without shutting anything down. EINVAL is
// success here: the call reached the filesystem.
func fsShutdownInvalid(path string) error {
	const shutdown = 0x8004587d // _IOR('X', 125, __u32)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	flags := uint32(0xffffffff)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), shutdown, uintptr(unsafe.Pointer(&flags)))
	switch e {
	case unix.EINVAL:
		fmt.Printf("ok: the shutdown ioctl on %s reached the filesystem (EINVAL for flags %#x, nothing shut down)\n", path, flags)
		return nil
	case 0:
		return fmt.Errorf("the shutdown ioctl on %s with flags %#x was accepted", path, flags)
	}
	return fmt.Errorf("shutdown ioctl %s: %w", path, e)
}

// cgroup1Agent mounts a named cgroup v1 hierarchy without controllers at
// dir with its release agent given as a mount option, so that the
// release_agent file is never opened: by mount(2) ("release_agent=" among
// the options) or by the new API (fsopen, fsconfig, fsmount, move_mount).
func cgroup1Agent(how, dir, name, agent string) error {
	if how == "mount" {
		if err := unix.Mount(name, dir, "cgroup", 0, "none,name="+name+",release_agent="+agent); err != nil {
			return fmt.Errorf("mount cgroup %s with release_agent=%s: %w", dir, agent, err)
		}
		fmt.Printf("ok: mounted cgroup v1 %s at %s with release_agent=%s by mount(2)\n", name, dir, agent)
		return nil
	}
	fd, err := unix.Fsopen("cgroup", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen cgroup: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetFlag(fd, "none"); err != nil {
		return fmt.Errorf("fsconfig none: %w", err)
	}
	if err := unix.FsconfigSetString(fd, "name", name); err != nil {
		return fmt.Errorf("fsconfig name=%s: %w", name, err)
	}
	if err := unix.FsconfigSetString(fd, "release_agent", agent); err != nil {
		return fmt.Errorf("fsconfig release_agent=%s: %w", agent, err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("fsconfig create: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", dir, err)
	}
	fmt.Printf("ok: mounted cgroup v1 %s at %s with release_agent=%s by fsconfig\n", name, dir, agent)
	return nil
}

// injectBPFProgLoad makes another process load the socket filter of
// bpf-prog-load: it attaches with ptrace, writes the program and its
// bpf_attr below the tracee's stack pointer, points the tracee at the
// syscall instruction it is stopped after (a sleeping process sits right
// after one) and single-steps it through bpf(BPF_PROG_LOAD). The load is
// then the tracee's, made under the tracee's tag: a container that may
// attach to a process of a container granted AllowBPF loads programs as
// that container. The new fd stays open in the tracee; its registers and
// the stack bytes it wrote are put back before the detach.
func injectBPFProgLoad(pid int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		return fmt.Errorf("ptrace attach %d: %w", pid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("wait for %d: %w", pid, err)
	}
	defer unix.PtraceDetach(pid)
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &saved); err != nil {
		return fmt.Errorf("get registers of %d: %w", pid, err)
	}
	sc := saved.Rip - 2
	op := make([]byte, 2)
	if _, err := unix.PtracePeekText(pid, uintptr(sc), op); err != nil || op[0] != 0x0f || op[1] != 0x05 {
		return fmt.Errorf("%d is not stopped after a syscall instruction (%x at %#x, %v)", pid, op, sc, err)
	}
	// Below the red zone and well clear of the frames in use.
	base := (saved.Rsp - 4096) &^ 15
	insnsAt, licAt, attrAt := base, base+64, base+128
	var attr progLoadAttr
	attr.progType = unix.BPF_PROG_TYPE_SOCKET_FILTER
	attr.insnCnt = 2
	attr.insns = insnsAt
	attr.license = licAt
	copy(attr.progName[:], "contid_vm_inj") // NUL-terminated within 16 bytes
	blob := make([]byte, 128+unsafe.Sizeof(attr))
	copy(blob[0:], []byte{0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0})
	copy(blob[64:], "GPL\x00")
	copy(blob[128:], unsafe.Slice((*byte)(unsafe.Pointer(&attr)), unsafe.Sizeof(attr)))
	old := make([]byte, len(blob))
	if _, err := unix.PtracePeekData(pid, uintptr(base), old); err != nil {
		return fmt.Errorf("read stack of %d: %w", pid, err)
	}
	if _, err := unix.PtracePokeData(pid, uintptr(base), blob); err != nil {
		return fmt.Errorf("write stack of %d: %w", pid, err)
	}
	defer unix.PtracePokeData(pid, uintptr(base), old)
	regs := saved
	regs.Rip = sc
	regs.Rax = unix.SYS_BPF
	regs.Orig_rax = ^uint64(0)
	regs.Rdi = unix.BPF_PROG_LOAD
	regs.Rsi = attrAt
	regs.Rdx = uint64(unsafe.Sizeof(attr))
	if err := unix.PtraceSetRegs(pid, &regs); err != nil {
		return fmt.Errorf("set registers of %d: %w", pid, err)
	}
	defer unix.PtraceSetRegs(pid, &saved)
	if err := unix.PtraceSingleStep(pid); err != nil {
		return fmt.Errorf("single-step %d: %w", pid, err)
	}
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("wait for %d: %w", pid, err)
	}
	var after unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &after); err != nil {
		return fmt.Errorf("get registers of %d after the call: %w", pid, err)
	}
	if r := int64(after.Rax); r < 0 {
		return fmt.Errorf("bpf(BPF_PROG_LOAD) in %d: %w", pid, unix.Errno(-r))
	}
	// The program is the tracee's; the same attach right copies it out,
	// ready for an attach command of the tracer's own.
	took := "not copied"
	if pidfd, err := unix.PidfdOpen(pid, 0); err == nil {
		if got, err := unix.PidfdGetfd(pidfd, int(after.Rax), 0); err == nil {
			target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(got))
			took = fmt.Sprintf("copied to fd %d here (%s)", got, target)
			unix.Close(got)
		} else {
			took = fmt.Sprintf("not copied: %v", err)
		}
		unix.Close(pidfd)
	}
	fmt.Printf("ok: attached to %d and had it load a socket filter (fd %d in %d), %s\n", pid, after.Rax, pid, took)
	return nil
}

// fsShutdown shuts the filesystem at path down for real
// (FS_IOC_SHUTDOWN with NOLOGFLUSH): use it on a scratch filesystem only.
func fsShutdown(path string) error {
	const shutdown = 0x8004587d
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	flags := uint32(2) // EXT4_GOING_FLAGS_NOLOGFLUSH
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), shutdown, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("shutdown ioctl %s: %w", path, e)
	}
	fmt.Printf("ok: shut down the filesystem at %s\n", path)
	return nil
}

// killLoop sends SIGURG to pid N times, or for a duration ("8s"), and
// prints how many sends each errno ended: the VM tier's count of refusals
// to hold the journal's against. SIGURG, because a Go program (contidd)
// takes a stray one for a preemption request and carries on, should one
// get through. It fails unless every send was refused with EPERM.
func killLoop(pidArg, howMany string) error {
	pid, err := strconv.Atoi(pidArg)
	if err != nil {
		return fmt.Errorf("bad pid %q: %w", pidArg, err)
	}
	var n int
	var until time.Time
	if d, derr := time.ParseDuration(howMany); derr == nil {
		until = time.Now().Add(d)
	} else if n, err = strconv.Atoi(howMany); err != nil || n < 1 {
		return fmt.Errorf("bad count %q: want N or a duration", howMany)
	}
	var eperm, sent, other int
	for i := 0; ; i++ {
		if until.IsZero() {
			if i == n {
				break
			}
		} else if i%256 == 0 && time.Now().After(until) {
			break
		}
		switch err := unix.Kill(pid, unix.SIGURG); {
		case err == nil:
			sent++
		case errors.Is(err, unix.EPERM):
			eperm++
		default:
			other++
		}
	}
	fmt.Printf("eperm: %d\nsent: %d\nother: %d\n", eperm, sent, other)
	if sent > 0 || other > 0 {
		return fmt.Errorf("%d of %d signals not refused with EPERM", sent+other, eperm+sent+other)
	}
	return unix.EPERM
}
