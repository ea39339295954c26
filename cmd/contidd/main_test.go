package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The argument paths that end before anything is loaded.
func TestRunArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"--help"}, 0},
		{"version", []string{"--version"}, 0},
		{"unknown flag", []string{"--frobnicate"}, exitUsage},
		{"stray argument", []string{"extra"}, exitUsage},
		{"bad mode", []string{"--config", "/dev/null", "--mode", "enforcing-maybe"}, exitConfig},
		{"relative socket", []string{"--config", "/dev/null", "--socket", "relative/bus"}, exitConfig},
		{"missing config is fine, bad log level is not", []string{"--config", "/nonexistent/contid.conf", "--log-level", "loud"}, exitConfig},
		{"a config that cannot be read may read next time", []string{"--config", "/proc/self/mem"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.code {
				t.Fatalf("run(%q) = %d, want %d", tt.args, got, tt.code)
			}
		})
	}
}

// The unit restarts contidd on every exit but the two that a restart
// cannot mend, and on 2 in particular: Go's exit status after a panic and
// after the watchdog's SIGABRT.
func TestUnitRestartPrevention(t *testing.T) {
	b, err := os.ReadFile("../../units/contidd.service")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "RestartPreventExitStatus=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("RestartPreventExitStatus=%s: %v", v, err)
			}
			got = append(got, n)
		}
	}
	slices.Sort(got)
	if want := []int{exitUsage, exitConfig}; !slices.Equal(got, want) {
		t.Fatalf("RestartPreventExitStatus= lists %v, want %v", got, want)
	}
}
