package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// contidctl is a client: it must not link the daemon's layers, and so
// not cilium/ebpf (which `go version -m bin/contidctl` would list). The
// test binary's build information lists the modules the contidctl
// package links, not those of its tests.
func TestClientLinksNoDaemonLayers(t *testing.T) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary has no build information")
	}
	if len(info.Deps) == 0 {
		t.Fatal("no dependencies listed: godbus at least is expected")
	}
	for _, dep := range info.Deps {
		if strings.HasPrefix(dep.Path, "github.com/cilium/") {
			t.Errorf("contidctl links %s %s", dep.Path, dep.Version)
		}
	}
}
