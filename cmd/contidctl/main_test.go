package main

import (
	"strings"
	"testing"
)

// Paths that need no daemon: usage, completion, argument errors.
func TestRunWithoutDaemon(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"help", []string{"--help"}, 0, "tag-cgroup"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"completion", []string{"completion", "bash"}, 0, "complete -F _contidctl contidctl"},
		{"completion other shell", []string{"completion", "tcsh"}, 2, "usage"},
		{"events without id", []string{"events"}, 2, "not a container ID"},
		{"events id 0", []string{"events", "0"}, 2, "not a container ID"},
		{"events u64 max", []string{"events", "18446744073709551615"}, 2, "not a container ID"},
		{"bad flag", []string{"list", "--frobnicate"}, 2, "flag provided but not defined"},
		{"bad join policy", []string{"--p2p", "/nonexistent", "tag-cgroup", "--join-policy", "sometimes", "/x"}, 2, "join-policy"},
		{"tag-pid not a number", []string{"--p2p", "/nonexistent", "tag-pid", "abc"}, 2, "not a PID"},
		{"unreachable", []string{"--p2p", "/nonexistent", "list"}, 1, "/nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.contains) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant text %q", code, tt.code, out.String(), errOut.String(), tt.contains)
			}
		})
	}
}
