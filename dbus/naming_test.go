package dbus_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid/dbus/client"
)

// A nested orchestrator (root, in container X, which allows nesting) may
// name the containers the kernel tagged inside X, and no other: one
// outside X's subtree is refused with NotDescendant and keeps no name,
// so its own orchestrator names it afterwards. The control is the same
// call for a container inside X.
func TestNamingByNestedOrchestrator(t *testing.T) {
	e := newEnv(t, "")
	x := e.cgroup("x")
	orch := e.cgroup("x/orch")
	pods := e.cgroup("x/pods")
	machines := e.cgroup("machines")
	e.start("--autotag-parents", pods+" "+machines)
	c := e.p2pClient()
	ctx := context.Background()
	if _, err := c.TagCgroup(ctx, x, 0, client.TagOptions{Name: "x", AllowNesting: true}); err != nil {
		t.Fatal(err)
	}
	mkdir := func(rel string) string {
		if err := os.Mkdir(filepath.Join(e.cgRoot, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		return rel
	}
	inside, outside := mkdir(pods+"/inner"), mkdir(machines+"/outer")
	insideID, outsideID := waitListed(t, c, inside), waitListed(t, c, outside)
	name := func(cg, n string) error {
		return busctlIn(e, orch, nil, "unix:path="+e.sock, "call", client.BusName, "/org/contid1", client.ManagerInterface,
			"TagCgroup", "sta{sv}", cg, "0", "1", "Name", "s", n)
	}

	if err := name(outside, "hijacked"); err == nil || !strings.Contains(err.Error(), client.NameNotDescendant) {
		t.Fatalf("the nested orchestrator named a container outside its subtree: %v", err)
	}
	if info, err := c.Container(ctx, outsideID); err != nil || info.Name != "" {
		t.Fatalf("after the refusal: %+v, %v", info, err)
	}
	// Its own orchestrator (root outside every container) still can.
	if _, err := c.TagCgroup(ctx, outside, 0, client.TagOptions{Name: "outer"}); err != nil {
		t.Fatalf("the host orchestrator naming it: %v", err)
	}

	// Control: inside its own subtree.
	if err := name(inside, "inner"); err != nil {
		t.Fatalf("the nested orchestrator naming a container inside its subtree: %v", err)
	}
	if info, err := c.Container(ctx, insideID); err != nil || info.Name != "inner" {
		t.Fatalf("after naming inside: %+v, %v", info, err)
	}
}
