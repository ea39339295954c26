package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// startTiedToTest starts cmd so that the kernel kills it (SIGKILL) when
// the test process dies however it dies: SIGKILL, a timeout's SIGQUIT, a
// crash. t.Cleanup runs only when the test ends normally, and a daemon
// that outlives the test keeps every descriptor it inherited. Go marks
// its own descriptors close-on-exec but passes on those it inherited:
// under `flock /work/.locks/host go test`, flock(1) hands its lock to go,
// go to the test binary, the binary to the daemon, which then holds the
// host lock for as long as it lives (a journald did, for 13 minutes).
// Closing that descriptor in the child would free the lock but still
// leave the daemon running, so the daemon is tied to the test instead.
//
// Pdeathsig is the tie, and it fires when the thread that forked the
// child exits, not the process: Go ends a thread whose goroutine exits
// while locked to it (a test switching namespaces does that), which would
// kill the daemon in the middle of the test. So every such child is
// forked from one goroutine locked to its thread that never returns:
// that thread lives exactly as long as the test process.
func startTiedToTest(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread()
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error)
	spawner.reqs <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// tieToTest is cleared by tests only, to show what happens to a daemon
// not tied to its test.
var tieToTest = true

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// spawner is the goroutine startTiedToTest forks from; reqs is never
// closed.
var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}
