package dbus_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
)

// TestZombieOnlyCgroupNotTakenForExit: a cgroup whose only task is a
// zombie (a helper that exited, not yet reaped by a parent outside it)
// never held processes as far as its cgroup.events says, so after the tag
// its container waits for the runtime's processes like that of an empty
// cgroup does; it is not ended by the exit checks before they come.
func TestZombieOnlyCgroupNotTakenForExit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		zombie bool
	}{
		{name: "empty cgroup"},
		{name: "cgroup holding only a zombie", zombie: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.start()
			c := e.p2pClient()
			ctx := context.Background()
			cg := e.cgroup("z")
			if tc.zombie {
				// Started and never waited for until cleanup: once it
				// exits it stays in cg as a zombie.
				p := e.startIn(cg, nil, "true")
				deadline := time.Now().Add(5 * time.Second)
				for {
					st, err := os.ReadFile("/proc/" + strconv.Itoa(p.Process.Pid) + "/stat")
					if err != nil {
						t.Fatal(err)
					}
					if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("helper %d not a zombie after 5 s: %s", p.Process.Pid, st)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond) // two exit checks or more
			p := e.startIn(cg, nil, "sleep", "1000")
			ci, err := c.Container(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ci.State != "active" {
				t.Errorf("container %d: state %s with its process %d running in its cgroup; want active", id, ci.State, p.Process.Pid)
			}
		})
	}
}
