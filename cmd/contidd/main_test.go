package main

import "testing"

// The argument paths that end before anything is loaded.
func TestRunArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"--help"}, 0},
		{"version", []string{"--version"}, 0},
		{"unknown flag", []string{"--frobnicate"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"bad mode", []string{"--config", "/dev/null", "--mode", "enforcing-maybe"}, 2},
		{"relative socket", []string{"--config", "/dev/null", "--socket", "relative/bus"}, 2},
		{"missing config is fine, bad log level is not", []string{"--config", "/nonexistent/contid.conf", "--log-level", "loud"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.code {
				t.Fatalf("run(%q) = %d, want %d", tt.args, got, tt.code)
			}
		})
	}
}
