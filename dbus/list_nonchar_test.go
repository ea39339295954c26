package dbus_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid/dbus/client"
)

// A cgroup name may hold any bytes but '/' and NUL, and sd-bus takes a
// string holding a Unicode noncharacter (U+FFFE, U+FDD0) as malformed:
// one such path in a listing would make every busctl ListContainers fail
// ("Bad message"), on either transport, for every user. Root in a nested
// container makes one under the autotag parent in its own subtree; contidd
// refuses to record it, and listings keep working. The control is a plain
// name under the same parent, which is recorded and listed.
func TestListContainersNoncharacter(t *testing.T) {
	e := newEnv(t, "")
	x := e.cgroup("x")
	pods := e.cgroup("x/pods")
	e.start("--autotag-parents", pods)
	c := e.p2pClient()
	ctx := context.Background()
	if _, err := c.TagCgroup(ctx, x, 0, client.TagOptions{Name: "x", AllowNesting: true}); err != nil {
		t.Fatal(err)
	}
	list := func(stage string) {
		t.Helper()
		for _, addr := range []string{"unix:path=" + e.sock, e.busAddr} {
			if out, err := busctl(true, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "ListContainers"); err != nil {
				t.Errorf("%s: nobody's busctl ListContainers on %.30s: %v: %.200s", stage, addr, err, out)
			}
		}
	}
	mkdir := func(p string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(e.cgRoot, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plain := pods + "/plain"
	mkdir(plain)
	waitListed(t, c, plain)
	list("control")

	odd := pods + "/p-\uFFFE"
	mkdir(odd)
	// Autotag events are handled in order: once the next cgroup is
	// listed, contidd has seen the odd one.
	after := pods + "/after"
	mkdir(after)
	waitListed(t, c, after)
	rows, err := c.ListContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Cgroup == odd {
			t.Errorf("the cgroup with a noncharacter was recorded as container %d", r.ID)
		}
	}
	list("noncharacter")

	// Asked for by name, it is refused with the reason.
	_, err = c.TagCgroup(ctx, odd, 0, client.TagOptions{})
	if !hasErrorName(err, client.NameInvalidArgs) || !strings.Contains(err.Error(), "noncharacter") {
		t.Errorf("TagCgroup(%q) = %v, want %s naming the noncharacter", odd, err, client.NameInvalidArgs)
	}
}
