package dbus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/rule"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel/audit"
)

// A reload of the audit rules (auditd's start runs `auditctl -D`) removes
// contidd's exemption of its own system calls. contidd puts it back as
// soon as its audit stream shows the rule removed, not at its fallback
// look 30 s later: it no longer lists the rules every 2 s, since each
// listing held up the audit records of tag calls for tens of
// milliseconds.
func TestExemptionBackAfterRuleRemoved(t *testing.T) {
	e := newEnv(t, "")
	ctl, err := audit.NewControl()
	if err != nil {
		testenv.Missing(t, "skipped: audit netlink unavailable: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	testenv.HoldAuditing(t, ctl, false)
	d := e.start()
	pid := d.cmd.Process.Pid

	// exemption finds contidd's rule among the kernel's.
	exemption := func() (rule.WireFormat, bool) {
		t.Helper()
		held, err := ctl.Rules()
		if err != nil {
			t.Fatalf("list audit rules: %v", err)
		}
		for _, wf := range held {
			line, err := rule.ToCommandLine(wf, false)
			if err == nil && strings.Contains(line, "contid-self") && strings.Contains(line, fmt.Sprintf("pid=%d ", pid)) {
				return wf, true
			}
		}
		return nil, false
	}
	waitExemption := func(within time.Duration) (rule.WireFormat, bool) {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
			if wf, ok := exemption(); ok || time.Now().After(deadline) {
				return wf, ok
			}
		}
	}
	wf, ok := waitExemption(5 * time.Second)
	if !ok {
		t.Fatalf("contidd (PID %d) holds no audit exemption\nlog:\n%s", pid, d.logText())
	}
	// Removed as a reload removes it: the kernel logs CONFIG_CHANGE
	// op=remove_rule.
	if err := ctl.DeleteRule(wf); err != nil {
		t.Fatalf("remove the exemption: %v", err)
	}
	removed := time.Now()
	if _, ok := waitExemption(5 * time.Second); !ok {
		t.Fatalf("the exemption was not back within 5 s of its removal\nlog:\n%s", d.logText())
	}
	t.Logf("exemption back %v after its removal", time.Since(removed).Round(time.Millisecond))
	if !strings.Contains(d.logText(), "put it back") {
		t.Errorf("contidd did not say it put the exemption back\nlog:\n%s", d.logText())
	}
}
