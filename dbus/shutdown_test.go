package dbus_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/hostile"
)

// A client accepted on the peer-to-peer socket just before SIGTERM (what
// `systemctl restart contidd` does to a looping client) is still answered:
// contidd stops accepting, lets open connections finish within its grace
// period, and only then exits.
func TestP2PClientAnsweredDuringShutdown(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	c := e.p2pClient()
	ctx := context.Background()
	if _, err := c.ListContainers(ctx); err != nil {
		t.Fatalf("before SIGTERM: %v", err)
	}

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	// Long enough for contidd to be well into its shutdown, well inside
	// its grace period.
	time.Sleep(300 * time.Millisecond)
	if !d.alive() {
		t.Fatalf("contidd exited at once with a client connected\nlog:\n%s", d.logText())
	}
	if _, err := c.ListContainers(ctx); err != nil {
		t.Fatalf("call on a connection accepted before SIGTERM: %v\nlog:\n%s", err, d.logText())
	}
	c.Close()

	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("contidd exited with %v after SIGTERM\nlog:\n%s", err, d.logText())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("contidd did not stop after its last client left\nlog:\n%s", d.logText())
	}
}

// A call the system bus delivered before SIGTERM is answered before
// contidd leaves the bus, not dropped with "disconnected without
// replying" (what a looping busctl saw across `systemctl restart`). The
// call is a tag that waits on polkit for the user's password; the user
// answers once contidd is shutting down.
func TestBusCallAnsweredDuringShutdown(t *testing.T) {
	e := newEnv(t, "", polkitPolicy)
	pk := startFakePolkit(t, e.busAddr)
	d := e.start()
	helperBinary(t)

	waiting := tagAsNobody(e.busAddr, true, e.cgroup("shutdown"), true)
	var out strings.Builder
	waiting.Stdout, waiting.Stderr = &out, &out
	if err := waiting.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiting.Wait() }()
	select {
	case <-pk.asked:
	case err := <-done:
		t.Fatalf("the call ended before polkit was asked: %v: %s", err, out.String())
	case <-time.After(10 * time.Second):
		t.Fatal("polkit was not asked within 10s")
	}

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	select {
	case pk.release <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatalf("contidd dropped its polkit check at SIGTERM\nlog:\n%s", d.logText())
	}
	select {
	case err := <-done:
		if err != nil || !strings.HasPrefix(out.String(), "granted ") {
			t.Errorf("the call delivered before SIGTERM: %v: %s\nlog:\n%s", err, out.String(), d.logText())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the call delivered before SIGTERM was not answered within 10s\nlog:\n%s", d.logText())
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("contidd did not stop after answering\nlog:\n%s", d.logText())
	}
}

// A stop is not held by a dbus-daemon that no longer answers: contidd
// gives up releasing its name and closes the connection. The control
// stops it with the bus answering.
func TestShutdownWithStalledBus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall bool
	}{{"control: bus answering", false}, {"bus stopped", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			d := e.start()
			bus := busDaemonPID(t, e.busAddr)
			if tc.stall {
				_ = unix.Kill(bus, unix.SIGSTOP)
				defer unix.Kill(bus, unix.SIGCONT)
			}
			start := time.Now()
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- d.cmd.Wait() }()
			select {
			case err := <-done:
				t.Logf("contidd exited %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), err)
			case <-time.After(15 * time.Second):
				_ = unix.Kill(bus, unix.SIGCONT)
				<-done
				t.Fatalf("contidd did not stop within 15 s of SIGTERM; it stopped %v after, once the bus answered again\nlog:\n%s", time.Since(start).Round(time.Millisecond), d.logText())
			}
		})
	}
}

// busDaemonPID is the PID of the dbus-daemon at addr, from the
// credentials of a connection to it.
func busDaemonPID(t *testing.T, addr string) int {
	t.Helper()
	c, err := hostile.Connect(busPath(addr), false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	return int(cred.Pid)
}
