package audit

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
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
	} {
		if got := hasKey(tc.line, selfRuleKey); got != tc.want {
			t.Errorf("hasKey(%q) = %v, want %v", tc.line, got, tc.want)
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
