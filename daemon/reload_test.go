package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid/config"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/kernel"
)

// systemctl reload (SIGHUP) after a drop-in changed re-reads the
// configuration: LogLevel=debug takes effect at once (a debug message
// that was filtered before the reload is logged after it), MaxContainers
// is reported as waiting for a restart, and a client connected before the
// reload keeps its connection and its container.
func TestReloadAppliesDropIns(t *testing.T) {
	e := newDaemonEnv(t, "")
	dropins := config.DropInDir(e.conf)
	if err := os.Mkdir(dropins, 0o755); err != nil {
		t.Fatal(err)
	}
	writeDropIn := func(text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dropins, "50-test.conf"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDropIn("[Manager]\nLogLevel=info\n")
	e.start(nil)

	// A connection and a tag made before the reload.
	root, err := kernel.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	cg := "/contid-daemontest-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(filepath.Join(root, cg), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(root, cg)) })
	c, err := client.ConnectP2P(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{Name: "reload-test"})
	if err != nil {
		t.Fatal(err)
	}

	// The debug message of a failed peer-to-peer authentication; at
	// LogLevel=info it is filtered.
	const debugLine = "Peer-to-peer authentication of process"
	failAuth := func() {
		t.Helper()
		conn, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("\x00NOT A SASL EXCHANGE\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Read(make([]byte, 256))
		conn.Close()
	}
	failAuth()
	if line, ok := e.log.waitFor(debugLine, 2*time.Second); ok {
		t.Fatalf("a debug message was logged at LogLevel=info: %q", line)
	}

	writeDropIn("[Manager]\nLogLevel=debug\nMaxContainers=100\n")
	before := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !e.notify.waitSince("RELOADING=1", before, 10*time.Second) || !e.notify.waitSince("READY=1", before, 10*time.Second) {
		t.Fatal("no RELOADING=1 then READY=1 around the reload")
	}
	line, ok := e.log.waitFor("Reloaded the configuration", 5*time.Second)
	if !ok {
		t.Fatal("the reload was not logged")
	}
	for _, want := range []string{
		"Applied: [Manager] LogLevel=debug (was info)",
		"Takes effect after a restart of contidd: [Manager] MaxContainers=100 (was 65536)",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("reload log %q does not say %q", line, want)
		}
	}
	failAuth()
	if _, ok := e.log.waitFor(debugLine, 5*time.Second); !ok {
		t.Error("LogLevel=debug did not take effect: the debug message is still filtered")
	}

	// The connection from before the reload still works, and the
	// container is still there, in the registry and in the kernel.
	got, err := c.GetContainer(ctx, id)
	if err != nil || got != id {
		t.Fatalf("GetContainer(%d) on the connection from before the reload = %d, %v", id, got, err)
	}
	info, err := c.Container(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "reload-test" {
		t.Errorf("container %d is named %q after the reload, want reload-test", id, info.Name)
	}
	if n := e.notify.count("STOPPING=1", time.Time{}); n != 0 {
		t.Errorf("contidd sent STOPPING=1 during the reload")
	}

	// A broken drop-in changes nothing and stops nothing.
	writeDropIn("[Manager]\nMaxDepth=0\n")
	before = time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.log.waitFor("Reload failed, the running configuration stays", 5*time.Second); !ok {
		t.Error("a broken drop-in was not reported")
	}
	if !e.notify.waitSince("READY=1", before, 10*time.Second) {
		t.Error("no READY=1 after a failed reload")
	}
	if _, err := c.GetContainer(ctx, id); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}
