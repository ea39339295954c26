package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Asking for a password works as in systemctl: a tag call may let polkit
// ask (D-Bus's ALLOW_INTERACTIVE_AUTHORIZATION flag) when standard input
// is a terminal, where someone can answer, and --no-ask-password was not
// given; a caller that is not root then also gets a text agent on that
// terminal for the length of the call (see agentArgs for when a desktop's
// agent takes precedence). Root needs no agent: contidd never asks polkit
// about UID 0.

// askPolicy is what one contidctl run does about authentication.
type askPolicy struct {
	allow bool // set ALLOW_INTERACTIVE_AUTHORIZATION on the calls
	agent bool // run a polkit agent for the call
}

func decideAsk(noAskPassword, stdinTerminal bool, euid int) askPolicy {
	allow := !noAskPassword && stdinTerminal
	return askPolicy{allow: allow, agent: allow && euid != 0}
}

// agentPath is polkit's text agent, where systemd's tools also look for
// it: a fixed path, not $PATH, since it is handed a terminal to ask for
// a password on.
var agentPath = "/usr/bin/pkttyagent"

// agentReadyTimeout bounds the wait for the agent to register. An agent
// that takes longer (or never tells) is left running: the call goes on,
// and polkit finds whatever agent is there by then.
const agentReadyTimeout = 10 * time.Second

// polkitAgent is a running pkttyagent.
type polkitAgent struct {
	cmd *exec.Cmd
}

// inLogindSession reports whether the process whose /proc/PID/cgroup is
// given runs in a logind session: a session-N.scope on its cgroup path,
// where logind puts each session (sd_pid_get_session reads the same).
func inLogindSession(procCgroup string) bool {
	for _, line := range strings.Split(procCgroup, "\n") {
		// hierarchy-ID:controllers:path; the path may hold colons.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, elem := range strings.Split(parts[2], "/") {
			if strings.HasPrefix(elem, "session-") && strings.HasSuffix(elem, ".scope") {
				return true
			}
		}
	}
	return false
}

// agentArgs are pkttyagent's arguments for this process. --process
// registers the agent for this process alone, so polkit finds it for this
// process's calls whether or not it runs in a logind session (a shell in
// a container, su, or a service has none). In a session, --fallback
// leaves a desktop's agent in charge, as with systemctl, and the terminal
// gets the prompt only where there is none. Outside a session it must be
// left out: polkit looks for a fallback agent only after finding the
// subject's session, so a fallback agent for a process in no session is
// never asked.
func agentArgs(pid int, inSession bool) []string {
	args := []string{"--notify-fd", "3"}
	if inSession {
		args = append(args, "--fallback")
	}
	return append(args, "--process", strconv.Itoa(pid))
}

// startAgent starts pkttyagent for this process and waits until it has
// registered with polkit: it closes the descriptor named by --notify-fd
// then, and also (by exiting) when it cannot. The agent shares the
// terminal: its prompt goes there, not to the output contidctl prints.
func startAgent(ctx context.Context) (*polkitAgent, error) {
	if _, err := os.Stat(agentPath); err != nil {
		return nil, fmt.Errorf("no polkit agent: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe for the polkit agent: %w", err)
	}
	defer r.Close()
	// The first of ExtraFiles is descriptor 3 in the child.
	cg, _ := os.ReadFile("/proc/self/cgroup")
	cmd := exec.Command(agentPath, agentArgs(os.Getpid(), inLogindSession(string(cg)))...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	// An agent outliving a contidctl that was killed would keep the
	// terminal and its registration: it goes with contidctl.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", agentPath, err)
	}
	a := &polkitAgent{cmd: cmd}
	wait := agentReadyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	_ = r.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, r); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return a, fmt.Errorf("wait for the polkit agent: %w", err)
	}
	return a, nil
}

// stop ends the agent and waits for it, as systemd's tools do once their
// call is answered.
func (a *polkitAgent) stop() {
	if a == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_ = a.cmd.Wait()
}

// prepareAsk applies the policy to a tag call: it returns the context
// the call runs in, and a function that ends what was started for it.
func prepareAsk(ctx context.Context, g *globals, set func(bool)) (context.Context, func()) {
	p := decideAsk(g.noAskPassword, isTerminal(os.Stdin), os.Geteuid())
	set(p.allow)
	if !p.allow {
		return ctx, func() {}
	}
	// The call's own deadline is the client's, longer when it may wait
	// for a password (client.InteractiveCallTimeout); this one ends the
	// agent with it.
	ctx, cancel := context.WithCancel(ctx)
	if !p.agent {
		return ctx, cancel
	}
	a, err := startAgent(ctx)
	if err != nil {
		// As systemctl: the call is made anyway, and polkit finds
		// another agent or refuses.
		fmt.Fprintf(os.Stderr, "contidctl: %v\n", err)
	}
	return ctx, func() {
		a.stop()
		cancel()
	}
}
