package dbus_test

import (
	"context"
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
