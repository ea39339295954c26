package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid"
)

// TestHeldProcessesState: whether a container held processes reads back
// from state written by this contidd and by an older one: absent in a
// file from before the field, kept when an older contidd rewrote the
// record without the field it does not know (as a UUID is), so a restart
// after the processes ended still ends the container; and not carried to
// a new instance the ID is given to.
func TestHeldProcessesState(t *testing.T) {
	const active = `"state":"active","created":1764300000000000000`
	tests := []struct {
		name     string
		snapshot []string
		journal  []string
		want     bool
	}{
		{"written before the field", []string{
			`{"op":"snapshot","version":2,"hwm":7}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"cgroups":[{"path":"/machine.slice/h.scope","id":77}],` + active + `}}`,
		}, nil, false},
		{"written with the field", []string{
			`{"op":"snapshot","version":2,"hwm":7}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"cgroups":[{"path":"/machine.slice/h.scope","id":77}],` + active + `,"held_processes":true}}`,
		}, nil, true},
		{"rewritten by an older contidd", []string{
			`{"op":"snapshot","version":2,"hwm":7}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"cgroups":[{"path":"/machine.slice/h.scope","id":77}],` + active + `,"held_processes":true}}`,
		}, []string{
			`{"op":"put","rec":{"id":7,"chain":[7],"name":"renamed","cgroups":[{"path":"/machine.slice/h.scope","id":77}],` + active + `}}`,
			`{"op":"close"}`,
		}, true},
		{"an ID given again to a new instance", []string{
			`{"op":"snapshot","version":2,"hwm":7}`,
			`{"op":"put","rec":{"id":7,"chain":[7],"uuid":"6f1c1d2e-0b7a-4c3e-9d2f-1a2b3c4d5e6f","cgroups":[{"path":"/machine.slice/h.scope","id":77}],` + active + `,"held_processes":true}}`,
		}, []string{
			`{"op":"put","rec":{"id":7,"chain":[7],"uuid":"0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d","cgroups":[{"path":"/machine.slice/h2.scope","id":78}],` + active + `}}`,
			`{"op":"close"}`,
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, lines []string) {
				if lines == nil {
					return
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(snapshotFile, tt.snapshot)
			write(journalFile, tt.journal)
			h := newHarness(t, Config{})
			h.r.Close()
			h.dir = dir
			h.open()
			if w := h.r.Warnings(); len(w) != 0 {
				t.Fatalf("warnings loading state: %q", w)
			}
			for range 2 {
				c, err := h.r.Get(contid.ID(7))
				if err != nil {
					t.Fatal(err)
				}
				if c.HeldProcesses != tt.want {
					t.Fatalf("container 7: HeldProcesses %v, want %v", c.HeldProcesses, tt.want)
				}
				h.reopen()
			}
		})
	}
}
