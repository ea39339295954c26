package dbus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
)

// TestExitSeenOfTaskBeyondTheWalk: a process the tag walk cannot see (in
// a cgroup nested deeper below the tagged one than the kernel's cgroup
// walk goes) is still in the cgroup at the tag, so when it exits right
// after the reply its container is seen to exit.
func TestExitSeenOfTaskBeyondTheWalk(t *testing.T) {
	for _, tc := range []struct {
		name  string
		depth int
	}{
		{name: "process one level down", depth: 1},
		{name: "process 40 levels down", depth: 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.start()
			c := e.p2pClient()
			ctx := context.Background()
			cg := e.cgroup("deep")
			deep := e.cgroup("deep/" + strings.TrimSuffix(strings.Repeat("n/", tc.depth), "/"))
			p := e.startIn(deep, nil, "sleep", "1000")
			id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_ = p.Process.Kill()
			_ = p.Wait()
			time.Sleep(2500 * time.Millisecond) // two exit checks or more
			ci, err := c.Container(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ci.State != "exited" {
				t.Errorf("container %d: state %s after its only process %d exited; want exited", id, ci.State, p.Process.Pid)
			}
		})
	}
}
