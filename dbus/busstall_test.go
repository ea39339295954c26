package dbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// stopBus stops the private dbus-daemon of e (SIGSTOP) until cleanup: a
// system bus that does not read.
func stopBus(t *testing.T, e *env) (resume func()) {
	t.Helper()
	dir := filepath.Dir(strings.TrimPrefix(e.busAddr, "unix:path="))
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "dbus-daemon") || !strings.Contains(string(cmdline), dir) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(ent.Name(), &pid); err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resume = func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
		t.Cleanup(resume)
		return resume
	}
	t.Fatalf("no dbus-daemon for %s", e.busAddr)
	return nil
}

// A container whose processes exit just after it was tagged is seen to
// exit while its cgroup stays, also when the system bus does not read.
func TestExitSeenWhileBusStalls(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	c := e.p2pClient()
	w := e.p2pClient()
	sigs, err := w.WatchSignals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resume := stopBus(t, e)

	// Tag empty cgroups until the signals stop coming: the announcer
	// (or, before it, the tag call itself) waits on the bus.
	fill := 0
	for ; fill < 3000; fill++ {
		cg := e.cgroup(fmt.Sprintf("fill%d", fill))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{})
		cancel()
		if err != nil {
			t.Logf("tag %d: %v", fill, err)
			break
		}
		if !sawNew(sigs, id, time.Second) {
			break
		}
	}
	t.Logf("signals stopped after %d tags", fill)

	const victim = contid.ID(4242)
	cg := e.cgroup("victim")
	p := e.startIn(cg, nil, "sleep", "1000")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = c.TagCgroup(ctx, cg, victim, client.TagOptions{})
	}()
	q := e.p2pClient()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := q.Container(ctx, victim)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %d not listed: %v", victim, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Its processes end; the cgroup stays.
	_ = p.Process.Kill()
	_ = p.Wait()
	state := waitExited(t, q, victim)
	if state != "exited" {
		t.Errorf("container %d 5 s after its only process ended, its cgroup empty: state %q; want exited", victim, state)
		resume()
		seen := sawNew(sigs, victim, 10*time.Second)
		t.Logf("bus reading again, its ContainerNew seen: %v; state %q 5 s later", seen, waitExited(t, q, victim))
	}
}

func waitExited(t *testing.T, q *client.Client, victim contid.ID) string {
	var state string
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := q.Container(ctx, victim)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		if state = info.State; state == "exited" {
			break
		}
	}
	return state
}

func sawNew(sigs <-chan client.Signal, id contid.ID, within time.Duration) bool {
	timeout := time.After(within)
	for {
		select {
		case s, ok := <-sigs:
			if !ok {
				return false
			}
			if s.Member == "ContainerNew" && s.ID == id {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
