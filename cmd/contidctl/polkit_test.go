package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// systemctl's rule: ask only where someone can answer and was not told
// not to; an agent only for a caller polkit is asked about (not root).
func TestDecideAsk(t *testing.T) {
	for _, tc := range []struct {
		name          string
		noAsk, tty    bool
		euid          int
		allow, agents bool
	}{
		{"user on a terminal", false, true, 1000, true, true},
		{"root on a terminal", false, true, 0, true, false},
		{"user on a terminal, --no-ask-password", true, true, 1000, false, false},
		{"user in a script", false, false, 1000, false, false},
		{"user in a script, --no-ask-password", true, false, 1000, false, false},
		{"root in a script", false, false, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideAsk(tc.noAsk, tc.tty, tc.euid)
			if got.allow != tc.allow || got.agent != tc.agents {
				t.Errorf("decideAsk(noAsk=%v, tty=%v, euid=%d) = %+v, want allow=%v agent=%v",
					tc.noAsk, tc.tty, tc.euid, got, tc.allow, tc.agents)
			}
		})
	}
}

// startAgent runs the agent with agentArgs' arguments, goes on once the agent closed its notify
// descriptor (or exited, or took too long), and stop ends the agent. The
// agent here is a shell script standing in for pkttyagent: it records
// its arguments and does what the case says with descriptor 3.
func TestStartAgentWaitsForRegistration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		// body runs in the fake agent after it wrote its arguments;
		// $1.. are pkttyagent's arguments.
		body string
		// ready: startAgent returns this long after the start at the
		// earliest, and well before the readiness timeout.
		ready time.Duration
	}{
		{"registers after a while", `sleep 0.5; exec 3>&-; exec sleep 60`, 500 * time.Millisecond},
		{"fails to register and exits", `exit 1`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := filepath.Join(dir, "args")
			os.Remove(args)
			fake := filepath.Join(dir, "agent")
			script := "#!/bin/sh\necho \"$@\" >" + args + "\n" + tc.body + "\n"
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			defer func(p string) { agentPath = p }(agentPath)
			agentPath = fake
			t0 := time.Now()
			a, err := startAgent(context.Background())
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("startAgent: %v", err)
			}
			if took < tc.ready || took > agentReadyTimeout/2 {
				t.Errorf("startAgent returned after %v; want at least %v and well under %v", took, tc.ready, agentReadyTimeout)
			}
			pid := a.cmd.Process.Pid
			a.stop()
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("agent %d still runs after stop", pid)
			}
			b, err := os.ReadFile(args)
			if err != nil {
				t.Fatal(err)
			}
			cg, err := os.ReadFile("/proc/self/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Join(agentArgs(os.Getpid(), inLogindSession(string(cg))), " ")
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("agent arguments %q, want %q", got, want)
			}
		})
	}
}

// An agent that never says it registered holds the call up only until
// the context's deadline (here shorter than the readiness timeout).
func TestStartAgentGivesUp(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func(p string) { agentPath = p }(agentPath)
	agentPath = fake
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	a, err := startAgent(ctx)
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("startAgent: %v", err)
	}
	a.stop()
	if took < 600*time.Millisecond || took > 3*time.Second {
		t.Errorf("startAgent returned after %v, want about 700ms", took)
	}
}

// No agent installed: the call goes on without one, with the reason.
func TestStartAgentMissing(t *testing.T) {
	defer func(p string) { agentPath = p }(agentPath)
	agentPath = filepath.Join(t.TempDir(), "no-such-agent")
	if a, err := startAgent(context.Background()); err == nil || a != nil {
		t.Errorf("startAgent with no agent = %v, %v; want nil and an error", a, err)
	}
}

// In a logind session a desktop's agent keeps precedence (--fallback, as
// systemctl has it); outside one the agent must not be a fallback, since
// polkit then never asks it.
func TestAgentArgs(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup string
		session      bool
		want         string
	}{
		{"ssh login, unified", "0::/user.slice/user-1000.slice/session-4.scope\n", true,
			"--notify-fd 3 --fallback --process 42"},
		{"desktop, hybrid", "12:name=systemd:/user.slice/user-1000.slice/session-c2.scope\n0::/user.slice/user-1000.slice/session-c2.scope\n", true,
			"--notify-fd 3 --fallback --process 42"},
		{"systemd-run service", "0::/system.slice/run-u7.service\n", false,
			"--notify-fd 3 --process 42"},
		{"user manager's terminal app", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-term-1.scope\n", false,
			"--notify-fd 3 --process 42"},
		{"a container's shell", "0::/\n", false, "--notify-fd 3 --process 42"},
		{"unreadable", "", false, "--notify-fd 3 --process 42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := inLogindSession(tc.cgroup); got != tc.session {
				t.Errorf("inLogindSession(%q) = %v, want %v", tc.cgroup, got, tc.session)
			}
			if got := strings.Join(agentArgs(42, tc.session), " "); got != tc.want {
				t.Errorf("agentArgs(42, %v) = %q, want %q", tc.session, got, tc.want)
			}
		})
	}
}
