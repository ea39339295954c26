package dbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// TestExitSeenAfterShortLivedTagLive is TestExitSeenAfterShortLivedTag
// against a running contidd and the kernel's own tag walk: a container
// whose processes all exit soon after the tag, its cgroup left in place,
// ends exited within a few exit checks.
func TestExitSeenAfterShortLivedTagLive(t *testing.T) {
	for _, tc := range []struct {
		name string
		// pod: an empty cgroup is tagged first, and the process's cgroup
		// is tagged into the same ID.
		pod bool
		// restart: contidd is killed after the tag and started again
		// once the process is gone.
		restart bool
	}{
		{name: "new container"},
		{name: "further cgroup of a pod whose first was empty", pod: true},
		{name: "contidd killed between tag and exit, then restarted", restart: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			d := e.start()
			c := e.p2pClient()
			ctx := context.Background()
			var id contid.ID
			if tc.pod {
				var err error
				if id, err = c.TagCgroup(ctx, e.cgroup("pod"), 0, client.TagOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cg := e.cgroup("c")
			p := e.startIn(cg, nil, "sleep", "1000")
			got, err := c.TagCgroup(ctx, cg, id, client.TagOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if id != 0 && got != id {
				t.Fatalf("tagged as %d, want %d", got, id)
			}
			id = got
			if tc.restart {
				d.kill()
			}
			_ = p.Process.Kill()
			_ = p.Wait()
			if tc.restart {
				e.start()
				c = e.p2pClient()
			}
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
			mi, err := c.Manager(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if state != "exited" {
				t.Errorf("container %d, its processes gone for 4 s, its cgroup in place: state %s, Containers %d; want exited", id, state, mi.Containers)
			}
		})
	}
}
