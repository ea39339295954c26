package dbus_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// A cgroup whose name holds a noncharacter is tagged by the kernel at
// mkdir but never recorded (TestListContainersNoncharacter). This follows
// it through a restart and a reboot:
//
//   - contidd starts with it in the kernel's tags (adoptKernelTags): it
//     becomes ready, warns once per start (not once per tick), and
//     listings keep working for nobody on both transports;
//   - a lookup of a process in it answers with an error busctl can read;
//   - after a reboot (the kernel's maps gone: pins removed with contidd
//     down), its ID, under which its processes' events were journaled,
//     is not handed out again, by allocation or on request.
//
// The control of the last part is the commit before the registry seals
// refused IDs (b537053): there the first tag after the reboot gets the
// ID again.
func TestNoncharacterRestartAndReboot(t *testing.T) {
	e := newEnv(t, "")
	pods := e.cgroup("pods")
	d := e.start("--autotag-parents", pods)
	c := e.p2pClient()
	ctx := context.Background()
	list := func(stage string) {
		t.Helper()
		for _, addr := range []string{"unix:path=" + e.sock, e.busAddr} {
			if out, err := busctl(true, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "ListContainers"); err != nil {
				t.Errorf("%s: nobody's busctl ListContainers on %.30s: %v: %.200s", stage, addr, err, out)
			}
		}
	}
	plain := pods + "/plain"
	if err := os.Mkdir(filepath.Join(e.cgRoot, plain), 0o755); err != nil {
		t.Fatal(err)
	}
	waitListed(t, c, plain)

	// The noncharacter cgroup is the last one made before the reboot.
	odd := pods + "/p-\uFFFE"
	if err := os.Mkdir(filepath.Join(e.cgRoot, odd), 0o755); err != nil {
		t.Fatal(err)
	}
	sleeper := e.startIn(odd, nil, "sleep", "600")
	warned := func(d *daemon) int { return strings.Count(d.logText(), "contains the Unicode noncharacter") }
	for i := 0; i < 100 && warned(d) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	// The kernel's ID of the process, as the lookup's error says it.
	_, err := c.GetContainerByPID(ctx, uint32(sleeper.Process.Pid))
	m := regexp.MustCompile(`has ID (\d+)`).FindStringSubmatch(errText(err))
	if m == nil {
		t.Fatalf("GetContainerByPID of the process in %q: %v; want an error naming its ID", odd, err)
	}
	oddID, _ := strconv.ParseUint(m[1], 10, 64)
	if out, err := busctl(true, "unix:path="+e.sock, "call", client.BusName, "/org/contid1", client.ManagerInterface, "GetContainerByPID", "u", strconv.Itoa(sleeper.Process.Pid)); err == nil || !strings.Contains(out, "has ID") {
		t.Errorf("nobody's busctl GetContainerByPID: %v: %.200s; want the error with its text", err, out)
	}
	list("live")

	// A restart: the kernel still holds the tag, and adoption at start
	// refuses it again.
	d.stop()
	d = e.start("--autotag-parents", pods)
	c = e.p2pClient()
	waitListed(t, c, plain)
	time.Sleep(3 * time.Second) // three ticks of the periodic work
	if n := warned(d); n != 1 {
		t.Errorf("after a restart and 3 s, contidd warned %d times about the cgroup, want once:\n%s", n, d.logText())
	}
	list("restart")

	// A reboot: contidd down, its kernel objects unpinned and so gone.
	d.stop()
	if err := os.RemoveAll(e.pin); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	e.start("--autotag-parents", pods)
	c = e.p2pClient()
	fresh := e.cgroup("fresh")
	id, err := c.TagCgroup(ctx, fresh, 0, client.TagOptions{Name: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the noncharacter cgroup's processes carried ID %d; the first container after the reboot got %d", oddID, id)
	if uint64(id) == oddID {
		t.Errorf("after a reboot, container %d was given the ID the kernel had given %q", id, odd)
	}
	again := e.cgroup("again")
	if got, err := c.TagCgroup(ctx, again, contid.ID(oddID), client.TagOptions{}); err == nil {
		t.Errorf("after a reboot, TagCgroup(%s, %d) was granted ID %d, the noncharacter cgroup's", again, oddID, got)
	}
	list("reboot")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
