package dbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// Tags and exits in quick succession from many callers: every container
// whose only process ended right after its tag call returned is seen to
// exit (its cgroup stays), each ContainerNew comes before its
// ContainerRemoved, and the last Containers count announced is the real
// one.
func TestSignalOrderUnderTagExitStorm(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	w := e.p2pClient()
	ch := make(chan *godbus.Signal, 100000)
	w.Conn().Signal(ch)
	c := e.p2pClient()
	// The watcher has said Hello (its client did), so signals reach it.
	const n = 120
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				cg := e.cgroup(fmt.Sprintf("s%d", i))
				p := e.startIn(cg, nil, "sleep", "1000")
				if _, err := c.TagCgroup(context.Background(), cg, 0, client.TagOptions{}); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					_ = p.Process.Kill()
					_ = p.Wait()
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(4 * time.Second) // exit checks every second
	mi, err := c.Manager(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	active := int(mi.Containers)
	seenNew := map[uint64]bool{}
	removed, last := 0, uint32(0)
	lastSet := false
	for len(ch) > 0 {
		s := <-ch
		switch s.Name {
		case client.ManagerInterface + ".ContainerNew":
			seenNew[s.Body[0].(uint64)] = true
		case client.ManagerInterface + ".ContainerRemoved":
			id := s.Body[0].(uint64)
			if !seenNew[id] {
				t.Errorf("ContainerRemoved %d before its ContainerNew", id)
			}
			removed++
		case "org.freedesktop.DBus.Properties.PropertiesChanged":
			if s.Body[0] == client.ManagerInterface {
				if v, ok := s.Body[1].(map[string]godbus.Variant)["Containers"]; ok {
					last, lastSet = v.Value().(uint32), true
				}
			}
		}
	}
	t.Logf("%d ContainerNew, %d ContainerRemoved, last Containers %d (set %v), active %d", len(seenNew), removed, last, lastSet, active)
	if len(seenNew) != n || removed != n/2 {
		t.Errorf("%d ContainerNew and %d ContainerRemoved, want %d and %d", len(seenNew), removed, n, n/2)
	}
	if int(last) != active {
		t.Errorf("last Containers announced %d, active %d", last, active)
	}
}
