package dbus

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

// A cgroup the kernel autotagged whose path the registry refuses (a
// Unicode noncharacter, bytes that are not UTF-8) has kernel entries like
// any other: its cgroup_tags entry and its ID's claim. Once it is removed
// they must go one grace later, as a recorded container's do; kept, a
// mkdir/rmdir loop of such names fills the kernel's maps and every later
// container under an autotag parent goes untagged. The control is a plain
// name, recorded, exited and released by the exit check. Also: each such
// cgroup is warned about once, not again at every resynchronization.
func TestRefusedCgroupReleasedAfterRemoval(t *testing.T) {
	for i, tc := range []struct{ name, dir string }{
		{"noncharacter", "p-\uFFFE"},
		{"not-utf8", "p-\xff"},
		{"control_plain", "p-plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			var (
				logMu sync.Mutex
				logs  []string
			)
			m.log = func(_ int, f string, a ...any) {
				logMu.Lock()
				logs = append(logs, f)
				logMu.Unlock()
			}
			tr := m.cfg.Tracker.(*fakeTracker)
			dir := filepath.Join(root, "target", tc.dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cgid, err := fakeCgroups{root}.ID("/target/" + tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			id := contid.ID(200 + i)
			tag := contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}
			tr.mu.Lock()
			tr.tags[cgid] = tag
			tr.claimed[id] = true
			tr.mu.Unlock()
			m.HandleKernelEvent(kernel.Event{Kind: kernel.EventAutotag, Tag: tag, CgroupID: cgid})
			// Two resynchronizations while it exists.
			m.resyncKernelTags()
			m.resyncKernelTags()
			logMu.Lock()
			warned := 0
			for _, f := range logs {
				if strings.HasPrefix(f, "Failed to adopt") {
					warned++
				}
			}
			logMu.Unlock()
			if refused := tc.name != "control_plain"; refused && warned != 1 {
				t.Errorf("warned %d times about the refused cgroup over its event and two resynchronizations, want once", warned)
			}

			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			// A few ticks of the periodic work, then past the grace.
			m.cfg.ExitPollInterval = 5 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			m.Run(ctx)
			cancel()
			m.releaseDue(time.Now().Add(ReleaseGrace + time.Second))
			tr.mu.Lock()
			_, tagged := tr.tags[cgid]
			claimed := tr.claimed[id]
			tr.mu.Unlock()
			if tagged || claimed {
				t.Errorf("%q removed, one grace later: cgroup_tags entry kept %v, ID %d claim kept %v; want both released", tc.dir, tagged, id, claimed)
			}
		})
	}
}
