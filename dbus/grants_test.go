package dbus_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// contidctl's --allow-bpf and --allow-modules reach the container's
// AllowBPF and AllowModules properties (and Flags, and show's output), a
// container tagged without them shows false, and a SIGKILL and restart of
// contidd keep both: the registry and the pinned kernel tags agree.
func TestAllowBPFShownAndKept(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	bus := "--address=" + e.busAddr
	agent, plain := e.cgroup("agent"), e.cgroup("plain")
	tag := func(args ...string) string {
		t.Helper()
		out, errOut, code := ctl(t, nil, nil, append([]string{bus, "tag-cgroup"}, args...)...)
		if code != 0 {
			t.Fatalf("contidctl tag-cgroup %v: exit %d: %s", args, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	agentID := tag("--name=agent", "--allow-bpf", "--allow-modules", agent)
	modsID := tag("--name=mods", "--allow-modules", e.cgroup("mods"))
	plainID := tag("--name=plain", plain)

	tests := []struct {
		name, id      string
		bpf, modules  bool
		flags, status string // in Flags; in status's output, "" for no Enforcing line
	}{
		{"both", agentID, true, true, "allow-bpf allow-modules", "may load BPF programs and kernel modules"},
		{"modules", modsID, false, true, "allow-modules", "may load kernel modules"},
		{"neither", plainID, false, false, "", ""},
	}
	check := func(when string, c *client.Client) {
		for _, tt := range tests {
			t.Run(when+"/"+tt.name, func(t *testing.T) {
				n, err := strconv.ParseUint(tt.id, 10, 64)
				if err != nil {
					t.Fatalf("tag-cgroup printed %q, not an ID", tt.id)
				}
				ci, err := c.Container(context.Background(), contid.ID(n))
				if err != nil {
					t.Fatal(err)
				}
				if ci.AllowBPF != tt.bpf || ci.AllowModules != tt.modules {
					t.Errorf("AllowBPF %v AllowModules %v, want %v %v", ci.AllowBPF, ci.AllowModules, tt.bpf, tt.modules)
				}
				if got := strings.Join(ci.Flags, " "); got != tt.flags {
					t.Errorf("Flags %q, want %q", got, tt.flags)
				}
				out, _, code := ctl(t, nil, nil, bus, "show", tt.id, "-p", "AllowBPF,AllowModules")
				if code != 0 || !strings.Contains(out, "AllowBPF=") || !strings.Contains(out, "AllowModules=") {
					t.Errorf("show -p AllowBPF,AllowModules: exit %d: %q", code, out)
				}
				out, _, _ = ctl(t, nil, nil, bus, "status", tt.id)
				if tt.status == "" && strings.Contains(out, "Enforcing") {
					t.Errorf("status shows an exception it does not have:\n%s", out)
				}
				if tt.status != "" && !squeezed(out, tt.status) {
					t.Errorf("status lacks %q:\n%s", tt.status, out)
				}
			})
		}
	}
	check("tagged", e.busClient())
	d.kill()
	e.start()
	check("after restart", e.busClient())
}
