package dbus_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
)

// TestExitSeenAfterRestartWhenWalkTaggedNoneLive is
// TestExitSeenAfterRestartWhenWalkTaggedNone against a running contidd
// and the kernel's walk: a pod's process, already tagged in the pod's
// first cgroup, moves to a sibling cgroup that is then tagged into the
// pod, so the walk finds nothing to tag. contidd is killed, the process
// ends, contidd starts again: the pod must end exited.
func TestExitSeenAfterRestartWhenWalkTaggedNoneLive(t *testing.T) {
	for _, tc := range []struct {
		name string
		// moved: the process starts in the pod's first cgroup and moves
		// to the second before that is tagged; else it starts in the
		// second, which the walk then tags.
		moved bool
	}{
		{name: "process started in the further cgroup"},
		{name: "process moved in from the pod's first cgroup", moved: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			d := e.start()
			c := e.p2pClient()
			ctx := context.Background()
			pod := e.cgroup("pod")
			id, err := c.TagCgroup(ctx, pod, 0, client.TagOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cg := e.cgroup("c")
			from := cg
			if tc.moved {
				from = pod
			}
			p := e.startIn(from, nil, "sleep", "1000")
			if tc.moved {
				procs := filepath.Join(e.cgRoot, cg, "cgroup.procs")
				if err := os.WriteFile(procs, []byte(strconv.Itoa(p.Process.Pid)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := c.TagCgroup(ctx, cg, id, client.TagOptions{}); err != nil || got != id {
				t.Fatalf("TagCgroup %s into %d: %d, %v", cg, id, got, err)
			}
			d.kill()
			_ = p.Process.Kill()
			_ = p.Wait()
			e.start()
			c = e.p2pClient()
			state := ""
			for i := 0; i < 40; i++ { // exit checks run every second
				ci, err := c.Container(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if state = ci.State; state == "exited" {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if state != "exited" {
				t.Errorf("pod %d, its only process gone for 4 s while its cgroups stay: state %s; want exited", id, state)
			}
		})
	}
}
