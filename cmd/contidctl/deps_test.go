package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/contid/contid/internal/testenv"
)

// contidctl is a client: it must not link the daemon's layers, and so
// not cilium/ebpf (which `go version -m bin/contidctl` would list).
func TestClientLinksNoDaemonLayers(t *testing.T) {
	testenv.RequireCommand(t, "go")
	out, err := exec.Command("go", "list", "-deps", "github.com/contid/contid/cmd/contidctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/cilium/ebpf", "github.com/contid/contid/kernel", "github.com/contid/contid/registry", "github.com/contid/contid/dbus"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") && pkg != "github.com/contid/contid/dbus/client" {
				t.Errorf("contidctl links %s", pkg)
			}
		}
	}
}
