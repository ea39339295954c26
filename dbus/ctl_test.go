package dbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/testenv"
)

// ctl runs the built contidctl and returns stdout, stderr and exit code.
func ctl(t *testing.T, cred *syscall.Credential, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(binPath), "contidctl"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestContidctl(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	bus := "--address=" + e.busAddr
	cg := e.cgroup("ctl")
	p := e.startIn(cg, nil, "sleep", "1000")

	out, errOut, code := ctl(t, nil, nil, bus, "tag-cgroup", "--name", "web", cg)
	if code != 0 {
		t.Fatalf("tag-cgroup: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)

	tests := []struct {
		name     string
		cred     *syscall.Credential
		args     []string
		code     int
		contains string
	}{
		{"list table", nil, []string{bus, "list"}, 0, "1 containers listed."},
		{"list over p2p", nil, []string{"--p2p", e.sock, "list"}, 0, "web"},
		{"list as nobody", nobody, []string{"--p2p", e.sock, "list"}, 0, cg},
		{"status manager", nil, []string{bus, "status"}, 0, "Enforcement: tracking"},
		{"status counters", nil, []string{bus, "status"}, 0, " ambiguous\n"},
		{"status by name", nil, []string{bus, "status", "web"}, 0, fmt.Sprint(p.Process.Pid)},
		{"show", nil, []string{bus, "show", id}, 0, "ControlGroup=" + cg},
		{"who", nil, []string{bus, "who", fmt.Sprint(p.Process.Pid)}, 0, "container " + id + " (web)"},
		{"who untagged", nil, []string{bus, "who", fmt.Sprint(os.Getpid())}, 4, "not in a container"},
		{"show missing", nil, []string{bus, "show", "987654"}, 4, "no container"},
		{"status missing name", nil, []string{bus, "status", "nope"}, 4, "no container named"},
		{"tag unknown unit", nil, []string{bus, "tag-unit", "absent.service"}, 4, "no such unit"},
		{"tag relative cgroup", nil, []string{bus, "tag-cgroup", "relative"}, 2, "must be absolute"},
		{"tag as nobody", nobody, []string{"--p2p", e.sock, "tag-cgroup", e.cgroup("x")}, 1, "access denied"},
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"missing argument", nil, []string{bus, "show"}, 2, "Usage"},
		{"completion", nil, []string{"completion", "bash"}, 0, "complete -o default -F __start_contidctl contidctl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, tt.cred, nil, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.contains) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant text %q", code, tt.code, out, errOut, tt.contains)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		out, errOut, code := ctl(t, nil, nil, bus, "list", "--json")
		var list []struct {
			Name         string `json:"name"`
			ControlGroup string `json:"control_group"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "web" || list[0].ControlGroup != cg {
			t.Fatalf("list --json: exit %d: %s %s", code, out, errOut)
		}
	})

	// events always adds the trusted match on contidd's unit, whatever
	// the user asks for. A stand-in journalctl records its arguments.
	t.Run("events", func(t *testing.T) {
		dir := t.TempDir()
		script := "#!/bin/sh\nprintf '%s\\n' \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := ctl(t, nil, []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, "events", id, "-n", "5", "-o", "json")
		want := "AUDIT_CONTAINER_ID=" + id + "\n_SYSTEMD_UNIT=contidd.service\n-n\n5\n-o\njson\n"
		if code != 0 || out != want {
			t.Fatalf("events ran journalctl with\n%s(exit %d, %s)\nwant\n%s", out, code, errOut, want)
		}
	})
}

// Under socket activation contidd serves the socket it was passed and
// does not create its own.
func TestSocketActivation(t *testing.T) {
	e := newEnv(t, "")
	testenv.RequireCommand(t, "systemd-socket-activate")
	activated := filepath.Join(e.dir, "activated")
	args := []string{"-l", activated, contiddBinary(t),
		"--config", e.conf, "--no-bus", "--socket", e.sock,
		"--state-directory", e.state, "--pin-directory", e.pin, "--mode", "tracking", "--autotag-parents", "none"}
	cmd := exec.Command("systemd-socket-activate", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(activated); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("systemd-socket-activate did not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The first connection starts contidd, as systemd would.
	c, err := client.ConnectP2P(activated)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer c.Close()
	mi, err := c.Manager(context.Background())
	if err != nil || mi.Enforcement != "tracking" {
		t.Fatalf("Manager over the activated socket: %+v, %v\n%s", mi, err, logs.String())
	}
	if _, err := net.Dial("unix", e.sock); err == nil {
		t.Fatalf("contidd listened on %s although it was socket-activated", e.sock)
	}
}
