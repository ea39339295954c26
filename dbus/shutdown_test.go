package dbus_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
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
