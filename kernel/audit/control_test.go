package audit

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procstat"
)

// TestHasKey: the exemption's rules are found by their key exactly, so an
// administrator's rule whose key only begins the same stays.
func TestHasKey(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"-a never,exit -S all -F pid=1 -F key=contid-self", true},
		{"-a never,exit -S all -F key=contid-self -F pid=1", true},
		{"-w /etc -p wa -k contid-self", true},
		{"-a always,exit -S bpf -F auid=4242 -F key=contid-selfie", false},
		{"-a always,exit -S bpf -F key=contid-selfie -F key=contid-self", true},
		{"-a always,exit -S bpf -F key=my-contid-self", false},
		{"-a always,exit -S bpf", false},
		{"-a always,exit -S bpf -F key=other key=contid-self", false},
		{"-a never,exit -S all -F pid=1 -F key=contid-self\x01contid-self-start=5", true},
		{"-a never,exit -S all -F pid=1 -F key=other\x01contid-self", true},
		{"-a never,exit -S all -F pid=1 -F key=contid-self-start=5", false},
	} {
		if got := hasKey(tc.line, selfRuleKey); got != tc.want {
			t.Errorf("hasKey(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestExemptionStale: DropExemptions removes this process's exemption and
// those of processes that are gone, and keeps one whose PID still names
// the process that made it, so that two contidd side by side (tests) do
// not undo each other's.
func TestExemptionStale(t *testing.T) {
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	start, err := procstat.StartTicks(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	own, err := procstat.StartTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rule := func(pid int, start uint64) string {
		return fmt.Sprintf("-a never,exit -S all -F pid=%d -F uid=0 -F auid=-1 -F key=%s\x01%s%d", pid, selfRuleKey, selfStartKey, start)
	}
	for _, tc := range []struct {
		name  string
		line  string
		stale bool
	}{
		{"this process", rule(os.Getpid(), own), true},
		{"another that runs", rule(other.Process.Pid, start), false},
		{"PID reused", rule(other.Process.Pid, start+1), true},
		{"gone", rule(gone.Process.Pid, 1), true},
		{"no start key", fmt.Sprintf("-a never,exit -S all -F pid=%d -F key=%s", other.Process.Pid, selfRuleKey), true},
		{"no PID", fmt.Sprintf("-a never,exit -S all -F key=%s\x01%s%d", selfRuleKey, selfStartKey, start), true},
		// A key may hold spaces: its "pid=" is not the rule's.
		{"PID only inside the key", fmt.Sprintf("-a never,exit -S all -F key=%s\x01%s%d pid=%d", selfRuleKey, selfStartKey, start, other.Process.Pid), true},
	} {
		if got := exemptionStale(tc.line); got != tc.stale {
			t.Errorf("%s: exemptionStale(%q) = %v, want %v", tc.name, tc.line, got, tc.stale)
		}
	}
}

// TestHoldsAuditSocket: a PID the kernel still names as its audit daemon
// counts only while that process has an audit socket open; a reused PID
// (any other live process) or a gone one does not.
func TestHoldsAuditSocket(t *testing.T) {
	c, err := dial(0)
	if err != nil {
		t.Skipf("no audit netlink socket here: %v", err)
	}
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pid  int
		want bool
	}{
		{"with an audit socket", os.Getpid(), true},
		{"live, no audit socket", other.Process.Pid, false},
		{"gone", gone.Process.Pid, false},
	} {
		if got := holdsAuditSocket(tc.pid); got != tc.want {
			t.Errorf("%s: holdsAuditSocket(%d) = %v, want %v", tc.name, tc.pid, got, tc.want)
		}
	}
	unix.Close(c.fd)
	if holdsAuditSocket(os.Getpid()) {
		t.Error("holdsAuditSocket is still true once the socket is closed: the check cannot tell")
	}
}
