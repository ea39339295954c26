package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// Paths that need no daemon: usage, help, version, completion, argument
// errors, and options before or after the arguments.
func TestRunWithoutDaemon(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // "" = stdout must be empty
		contains string // in stderr
	}{
		{"help", []string{"--help"}, 0, "tag-cgroup", ""},
		{"short help", []string{"-h"}, 0, "--no-pager", ""},
		{"help command", []string{"help"}, 0, "tag-cgroup", ""},
		{"command help", []string{"tag-cgroup", "--help"}, 0, "--address", ""},
		{"command help after argument", []string{"tag-cgroup", "/x", "-h"}, 0, "--join-policy", ""},
		{"version", []string{"--version"}, 0, "contidctl ", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
		{"completion bash", []string{"completion", "bash"}, 0, "complete -o default -F __start_contidctl contidctl", ""},
		{"completion zsh", []string{"completion", "zsh"}, 0, "#compdef contidctl", ""},
		{"completion fish", []string{"completion", "fish"}, 0, "complete -c contidctl", ""},
		{"completion other shell", []string{"completion", "tcsh"}, 2, "", "bash, zsh or fish"},
		{"events without id", []string{"events"}, 2, "", "Usage: contidctl events"},
		{"events id 0", []string{"events", "0"}, 2, "", "not a container ID"},
		{"events u64 max", []string{"events", "18446744073709551615"}, 2, "", "not a container ID"},
		{"bad flag", []string{"list", "--frobnicate"}, 2, "", "unknown flag: --frobnicate"},
		{"bad json value", []string{"list", "--json=yes"}, 2, "", "pretty, short or off"},
		{"json takes = only", []string{"--p2p", "/nonexistent", "list", "--json", "short"}, 2, "", "takes no arguments"},
		{"bad join policy", []string{"--p2p", "/nonexistent", "tag-cgroup", "--join-policy", "sometimes", "/x"}, 2, "", "join-policy"},
		{"bad join policy after", []string{"tag-cgroup", "/x", "--p2p=/nonexistent", "--join-policy=sometimes"}, 2, "", "join-policy"},
		{"status, two arguments", []string{"status", "a", "b"}, 2, "", "at most 1 argument"},
		{"tag-pid not a number", []string{"--p2p", "/nonexistent", "tag-pid", "abc"}, 2, "", "not a PID"},
		{"unknown property", []string{"show", "1", "-p", "Id,Colour", "--p2p", "/nonexistent"}, 2, "", `unknown property "Colour"`},
		{"unreachable", []string{"--p2p", "/nonexistent", "list"}, 1, "", "/nonexistent"},
		{"unreachable, options after", []string{"status", "web", "--json", "--p2p=/nonexistent"}, 1, "", "/nonexistent"},
		{"go flag style still accepted", []string{"-p2p=/nonexistent", "-json", "list"}, 1, "", "/nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(tt.args, &out, &errOut)
			okOut := tt.stdout == "" && out.Len() == 0 || tt.stdout != "" && strings.Contains(out.String(), tt.stdout)
			okErr := tt.contains == "" && errOut.Len() == 0 || tt.contains != "" && strings.Contains(errOut.String(), tt.contains)
			if code != tt.code || !okOut || !okErr {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout %q, stderr %q", code, tt.code, out.String(), errOut.String(), tt.stdout, tt.contains)
			}
		})
	}
}

// --help prints its text once, on stdout (it used to go to both).
func TestHelpOnce(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(out.String(), "Available Commands:"); n != 1 || errOut.Len() != 0 {
		t.Fatalf("help printed %d times on stdout, stderr %q", n, errOut.String())
	}
}

// events always adds the trusted match on contidd's unit, whatever the
// options and wherever they are. A stand-in journalctl records its
// arguments; contidctl replaces itself with it, so the test runs
// contidctl as a program.
func TestEventsArguments(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	trusted := "AUDIT_CONTAINER_ID=42\n_SYSTEMD_UNIT=contidd.service\n"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"events", "42", "-n", "5", "-o", "json"}, trusted + "-n\n5\n-o\njson\n"},
		{[]string{"events", "-n", "5", "-o", "json", "42"}, trusted + "-n\n5\n-o\njson\n"},
		{[]string{"events", "42", "--json"}, trusted + "-o\njson\n"},
		{[]string{"events", "--json=pretty", "42", "-f", "--no-pager"}, trusted + "-f\n-o\njson-pretty\n--no-pager\n"},
		{[]string{"events", "--within", "42", "-r", "--since=-1h", "--until", "2026-12-06 10:00"}, "AUDIT_CONTAINER_WITHIN=42\n_SYSTEMD_UNIT=contidd.service\n-r\n--since=-1h\n--until=2026-12-06 10:00\n"},
		{[]string{"events", "-S", "today", "42", "-U", "now"}, trusted + "--since=today\n--until=now\n"},
		{[]string{"events", "--follow", "--lines=3", "42", "_SYSTEMD_UNIT=evil.service"}, ""},
		{[]string{"events", "--uuid=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", "-n", "5"}, "AUDIT_CONTAINER_UUID=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b\n_SYSTEMD_UNIT=contidd.service\n-n\n5\n"},
		{[]string{"events", "-r", "--uuid", "5F0C7A8E-9B1D-4E2F-8A3B-6C7D8E9F0A1B"}, "AUDIT_CONTAINER_UUID=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b\n_SYSTEMD_UNIT=contidd.service\n-r\n"},
		{[]string{"events", "--uuid=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", "_SYSTEMD_UNIT=evil.service"}, ""},
		{[]string{"events", "--uuid=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", "42"}, ""},
		{[]string{"events", "--uuid=5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b", "--within"}, ""},
		{[]string{"events"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runBinary(t, []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, tt.args...)
			if tt.want == "" {
				if code != 2 {
					t.Fatalf("exit %d, want 2 (a usage error)\n%s%s", code, out, errOut)
				}
				return
			}
			if code != 0 || out != tt.want {
				t.Fatalf("events ran journalctl with\n%s(exit %d, %s)\nwant\n%s", out, code, errOut, tt.want)
			}
		})
	}
}

// list, show and status give a container the same keys; the chain is an
// array of IDs, innermost first.
func TestContainerJSONShape(t *testing.T) {
	ci := client.ContainerInfo{ID: 4, Name: "web", ParentID: 2, Chain: contid.Chain{4, 2, 1}, State: "active", UUID: "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"}
	var g globals
	var out strings.Builder
	g.out, g.json = &out, jsonShort
	if err := g.printJSON(object(containerProperties(ci))); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if chain, ok := got["chain"].([]any); !ok || len(chain) != 3 || chain[0] != float64(4) || chain[2] != float64(1) {
		t.Fatalf("chain = %#v, want [4,2,1]", got["chain"])
	}
	for _, key := range []string{"id", "name", "state", "unit", "control_group", "parent_id", "object"} {
		if _, ok := got[key]; !ok {
			t.Errorf("no key %q in %s", key, out.String())
		}
	}
	if got["uuid"] != ci.UUID {
		t.Errorf("uuid = %#v, want %q", got["uuid"], ci.UUID)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("--json=short printed more than one line: %q", out.String())
	}
}
