package kernel

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests: tests re-execute it to get a second process with a known
// role (a tagged parent that clones into a cgroup, a loader to kill -9).
const helperEnv = "CONTID_KERNEL_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "clone-into":
		os.Exit(helperCloneInto(os.Args[len(os.Args)-1]))
	case "loader":
		os.Exit(helperLoader(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	case "spawn-from-thread":
		os.Exit(helperSpawnFromThread())
	case "probe":
		mode, reason := Probe()
		fmt.Printf("%s\n%s\n", mode, reason)
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperCloneInto starts `sleep 60` directly in the cgroup directory given
// (CLONE_INTO_CGROUP), prints its PID and waits to be killed.
func helperCloneInto(cgroupDir string) int {
	fd, err := unix.Open(cgroupDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	_ = cmd.Wait()
	return 0
}

func init() {
	// Keep the helper's main goroutine on the thread-group leader so the
	// spawns below are known to come from another thread.
	if os.Getenv(helperEnv) == "spawn-from-thread" {
		runtime.LockOSThread()
	}
}

// helperSpawnFromThread prints "ready", then for each cgroup directory
// read from stdin starts `sleep 600` in it (CLONE_INTO_CGROUP) from a
// thread that is not the thread-group leader and prints the child's PID.
func helperSpawnFromThread() int {
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		dir := in.Text()
		done := make(chan string)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				done <- "error: spawning thread is the leader"
				return
			}
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- "error: " + err.Error()
				return
			}
			defer unix.Close(fd)
			cmd := exec.Command("sleep", "600")
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				done <- "error: " + err.Error()
				return
			}
			done <- strconv.Itoa(cmd.Process.Pid)
		}()
		fmt.Println(<-done)
	}
	return 0
}

type loaderReport struct {
	IDs     []contid.ID
	Claimed contid.ID
}

// helperLoader loads contid from pinDir, hands out IDs, tags the cgroup
// with the first, reports and then waits to be killed with SIGKILL.
func helperLoader(pinDir, cgroupRel string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	b, err := Load(Options{PinDir: pinDir, Mode: testMode()})
	if err != nil {
		return fail(err)
	}
	var rep loaderReport
	for i := 0; i < 3; i++ {
		id, err := b.AllocateID()
		if err != nil {
			return fail(err)
		}
		rep.IDs = append(rep.IDs, id)
	}
	rep.Claimed = rep.IDs[2] + 1000
	if err := b.ClaimID(rep.Claimed); err != nil {
		return fail(err)
	}
	cgid, err := CgroupID(cgroupRel)
	if err != nil {
		return fail(err)
	}
	if _, err := b.TagCgroup(cgid, contid.Tag{Chain: contid.Chain{rep.IDs[0]}}); err != nil {
		return fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return fail(err)
	}
	time.Sleep(time.Hour)
	return 0
}

// startHelper re-executes the test binary in a helper role and returns
// the command and a reader on its stdout.
func startHelper(t *testing.T, role string, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out)
}
