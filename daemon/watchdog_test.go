package daemon_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel/audit"
)

// The watchdog is pinged only while every loop makes progress. Here the
// audit loop hangs for a real reason: the journal socket it writes to is
// no longer read (as with a stopped journald), so its writer blocks in a
// write. The pings stop while the D-Bus loop still answers and the log
// names only the stuck loop; once the socket is read again the writer
// moves and the pings resume, because a loop that recovers before
// WatchdogSec runs out is no reason for systemd to restart contidd.
func TestWatchdogFollowsLoopProgress(t *testing.T) {
	ctl := auditSession(t, false)
	e := newDaemonEnv(t, "[Audit]\nSocket=multicast\nWriteUntagged=yes\n")
	journalPath := filepath.Join(e.dir, "journal")
	journalSock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: journalPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer journalSock.Close()
	const watchdogTimeout = 2 * time.Second
	e.start([]string{"WATCHDOG_USEC=2000000"}, "--journal-socket", journalPath)

	start := time.Now()
	time.Sleep(2 * watchdogTimeout)
	if n := e.notify.count("WATCHDOG=1", start); n < 4 {
		t.Fatalf("%d watchdog pings in %s of an idle contidd, want at least 4 (one every %s)", n, 2*watchdogTimeout, watchdogTimeout/4)
	}

	// Nobody reads the journal socket: its queue (net.unix.max_dgram_qlen
	// datagrams) fills and the next write blocks.
	for i := 0; i < 64; i++ {
		if err := ctl.WriteUser(auparse.AUDIT_TRUSTED_APP, "contid watchdog test"); err != nil {
			t.Fatalf("write an audit user record: %v", err)
		}
	}
	line, ok := e.log.waitFor("Not pinging the watchdog", 3*watchdogTimeout)
	if !ok {
		t.Fatal("contidd kept pinging with its journal writer blocked")
	}
	if !strings.Contains(line, "journal writer") || strings.Contains(line, "D-Bus loop") || strings.Contains(line, "kernel event loop") {
		t.Errorf("the log names the wrong loops: %q", line)
	}
	stalled := time.Now()
	time.Sleep(watchdogTimeout)
	if n := e.notify.count("WATCHDOG=1", stalled); n != 0 {
		t.Errorf("%d watchdog pings in the %s after the audit loop stalled, want none", n, watchdogTimeout)
	}
	// The other loops still run: the D-Bus loop answers a client.
	c, err := client.ConnectP2P(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Manager(ctx); err != nil {
		t.Errorf("the D-Bus loop does not answer while the audit loop is stuck: %v", err)
	}
	c.Close()

	// Recovery: read the journal socket until contidd says it pings
	// again.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 1<<16)
		for {
			_ = journalSock.SetReadDeadline(time.Now().Add(3 * watchdogTimeout))
			if _, err := journalSock.Read(buf); err != nil {
				return
			}
		}
	}()
	recovered := time.Now()
	if !e.notify.waitSince("WATCHDOG=1", recovered, 3*watchdogTimeout) {
		t.Fatal("no watchdog ping after the journal socket was read again")
	}
	if _, ok := e.log.waitFor("pinging the watchdog", time.Second); !ok {
		t.Error("contidd did not say that it pings again")
	}
	journalSock.Close()
	<-drained
}

// auditSession opens an audit control socket and holds kernel auditing
// on for the test (testenv.HoldAuditing); with exclusive, the test holds
// the flag alone and may switch auditing off.
func auditSession(t *testing.T, exclusive bool) *audit.Control {
	t.Helper()
	testenv.RequireRoot(t)
	ctl, err := audit.NewControl()
	if err != nil {
		testenv.Missing(t, "skipped: audit netlink unavailable: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	saved, err := ctl.Status()
	if err != nil {
		testenv.Missing(t, "skipped: AUDIT_GET refused (needs CAP_AUDIT_CONTROL in the initial namespaces): %v", err)
	}
	if saved.Enabled == 2 {
		testenv.Missing(t, "skipped: the audit configuration is locked (enabled=2)")
	}
	testenv.HoldAuditing(t, ctl, exclusive)
	return ctl
}
