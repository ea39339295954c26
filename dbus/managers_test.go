package dbus_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contid/contid/dbus/client"
)

// What started a container is recorded as its manager, image and manager
// ID: an OCI hook names a cgroup the kernel autotagged with them, right
// after the cgroup was made (possibly before contidd read the autotag
// event); a second manager cannot overwrite them; and an API caller that
// gives none is recorded as "api".
func TestManagerLabels(t *testing.T) {
	e := newEnv(t, "")
	machines := e.cgroup("machines")
	plain := e.cgroup("plain")
	e.start("--autotag-parents", machines)
	c := e.p2pClient()
	ctx := context.Background()

	// The hook's call comes right after the runtime's mkdir.
	scope := machines + "/libpod-3f2a.scope"
	if err := os.Mkdir(filepath.Join(e.cgRoot, scope), 0o755); err != nil {
		t.Fatal(err)
	}
	hook := client.TagOptions{Name: "pweb", Manager: "podman", Image: "busybox", ManagerID: "3f2a"}
	id, err := c.TagCgroup(ctx, scope, 0, hook)
	if err != nil {
		t.Fatalf("naming the autotagged cgroup: %v", err)
	}
	info, err := c.Container(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "pweb" || info.Manager != "podman" || info.Image != "busybox" || info.ManagerID != "3f2a" || info.ControlGroup != scope {
		t.Fatalf("container %d: %+v", id, info)
	}
	if !slices.Contains(info.Flags, "autotag") {
		t.Fatalf("the hook's call made a new container instead of naming the autotagged one: flags %v", info.Flags)
	}
	if n := countListed(t, c, scope); n != 1 {
		t.Fatalf("%d records for %s, want 1", n, scope)
	}

	// Another manager's word does not replace it.
	if _, err := c.TagCgroup(ctx, scope, 0, client.TagOptions{Manager: "nspawn"}); err == nil || !strings.Contains(err.Error(), "already managed by") {
		t.Fatalf("a second manager: %v, want AlreadyTagged", err)
	}
	if again, _ := c.Container(ctx, id); again.Manager != "podman" {
		t.Fatalf("manager after the refusal: %q", again.Manager)
	}

	// Tagged through the API by a caller that does not say: "api".
	apiID, err := c.TagCgroup(ctx, plain, 0, client.TagOptions{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Container(ctx, apiID); err != nil || info.Manager != "api" || info.Image != "" || info.ManagerID != "" {
		t.Fatalf("API-tagged container: %+v, %v", info, err)
	}
}

func countListed(t *testing.T, c *client.Client, cg string) int {
	t.Helper()
	list, err := c.ListContainers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, le := range list {
		if le.Cgroup == cg {
			n++
		}
	}
	return n
}
