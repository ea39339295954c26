package dbus_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cdbus "github.com/contid/contid/dbus"
)

// nonchar storm: CONTID_NONCHAR_CYCLES sets the cycles (default 2,000);
// CONTID_NONCHAR_NOSETTLE=1 skips the wait for the release after it.
const noncharCyclesEnv = "CONTID_NONCHAR_CYCLES"

// Root in a nesting container (or anyone who may mkdir under an autotag
// parent) makes cgroups whose names contidd refuses to record (a Unicode
// noncharacter; before d0c46e9 only names that are not UTF-8), waits
// until contidd has read each one's autotag event, and removes them. The
// kernel gave each an entry in cgroup_tags and a claimed ID, and with no
// record nothing releases them: the storm of TestMapStorm, which contidd
// withstands for names it records (the control, plain names, run the same
// way), fills the maps here. A full cgroup_tags leaves every later
// container under every autotag parent untagged (autotag.c).
func TestNoncharacterStormLeaksKernelEntries(t *testing.T) {
	cycles := 2000
	if v := os.Getenv(noncharCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q", noncharCyclesEnv, v)
		}
		cycles = n
	}
	const batch = 200
	for _, tc := range []struct {
		name   string
		format string
		marker string // what contidd logs once it has handled the event
	}{
		{"noncharacter", "p-%d-\uFFFE", "Failed to adopt autotagged cgroup"},
		{"control_plain", "p-%d", "was tagged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			parent := e.cgroup("storm")
			d := e.start("--autotag-parents", parent)
			maps := openPinnedMaps(t, e.pin)
			before := occupancy(t, maps)
			dir := filepath.Join(e.cgRoot, parent)
			start := time.Now()
			full := false
			for done := 0; done < cycles && !full; done += batch {
				n := min(batch, cycles-done)
				for i := done; i < done+n; i++ {
					if err := syscall.Mkdir(filepath.Join(dir, fmt.Sprintf(tc.format, i)), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				// Until contidd has read them all: removed before,
				// a cgroup is released as one that vanished. No event
				// comes for a cgroup the kernel could not tag.
				for w := 0; strings.Count(d.logText(), tc.marker) < done+n; w++ {
					if w > 100 {
						t.Logf("the kernel tagged only %d of the %d cgroups made (cgroup_tags %d/%d)", strings.Count(d.logText(), tc.marker), done+n, count(t, maps["cgroup_tags"]), maps["cgroup_tags"].MaxEntries())
						full = true
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				for i := done; i < done+n; i++ {
					if err := syscall.Rmdir(filepath.Join(dir, fmt.Sprintf(tc.format, i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			t.Logf("%d cycles in %s: %s", cycles, time.Since(start).Round(time.Millisecond), formatOccupancy(occupancy(t, maps), maps))
			// Another user's container, made under the autotag parent
			// right after the storm, is tagged.
			victim := parent + "/victim"
			if err := os.Mkdir(filepath.Join(e.cgRoot, victim), 0o755); err != nil {
				t.Fatal(err)
			}
			defer syscall.Rmdir(filepath.Join(e.cgRoot, victim))
			c := e.p2pClient()
			listed := false
			for w := 0; w < 50 && !listed; w++ {
				rows, err := c.ListContainers(context.Background())
				if err != nil {
					t.Fatalf("ListContainers after the storm: %v (contidd alive: %v)\ncontidd log (tail):\n%s", err, d.alive(), tail(d.logText(), 15))
				}
				for _, r := range rows {
					listed = listed || r.Cgroup == victim
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !listed {
				t.Errorf("a cgroup made under the autotag parent after the storm was not tagged within 5 s (cgroup_tags %d/%d)", count(t, maps["cgroup_tags"]), maps["cgroup_tags"].MaxEntries())
			}
			if err := syscall.Rmdir(filepath.Join(e.cgRoot, victim)); err != nil {
				t.Fatal(err)
			}
			if os.Getenv("CONTID_NONCHAR_NOSETTLE") != "" {
				return
			}
			// The exit check visits 1,000 containers a second, then the
			// grace runs.
			deadline := time.Now().Add(cdbus.ReleaseGrace + time.Duration(cycles/1000*2)*time.Second + 15*time.Second)
			var after map[string]int
			for {
				after = occupancy(t, maps)
				if flat(before, after) == "" || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			t.Logf("before: %s; settled after %s: %s", formatOccupancy(before, maps), time.Since(start).Round(time.Second), formatOccupancy(after, maps))
			if msg := flat(before, after); msg != "" {
				t.Errorf("kernel entries of %d removed cgroups were not released: %s\ncontidd log (tail):\n%s", cycles, msg, tail(d.logText(), 5))
			}
		})
	}
}
