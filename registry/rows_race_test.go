package registry

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/contid/contid"
)

// Rows, read while containers are tagged, renamed, given further cgroups
// and marked exited, shows each record whole as one version of it had it:
// sorted by ID, no ID twice, the name and unit of one SetMetadata
// together, and the primary cgroup the record was tagged with. Run it
// with -race.
func TestRowsConcurrent(t *testing.T) {
	h := newHarness(t, Config{})
	const writers, perWriter = 4, 60
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				tail := fmt.Sprintf("w%dc%d", w, i)
				c, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/"+tail+".scope"), Options{Name: tail})
				if err != nil {
					fail(err)
					return
				}
				// A pod's second cgroup must not change the primary one.
				if i%3 == 0 {
					if _, err := h.r.TagCgroup(orchestrator, c.ID, target("/machine.slice/"+tail+"-side.scope"), Options{}); err != nil {
						fail(err)
						return
					}
				}
				for k := range 3 {
					if err := h.r.SetMetadata(c.ID, fmt.Sprintf("%s~%d", tail, k), fmt.Sprintf("%s~%d.scope", tail, k)); err != nil {
						fail(err)
						return
					}
				}
				if i%2 == 0 {
					if _, err := h.r.MarkExited(c.ID); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	var readers sync.WaitGroup
	var listings atomic.Int64
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !done.Load() {
				runtime.Gosched()
				rows := h.r.Rows()
				listings.Add(1)
				for i, r := range rows {
					if i > 0 && rows[i-1].ID >= r.ID {
						fail(fmt.Errorf("rows not strictly sorted: %d then %d", rows[i-1].ID, r.ID))
						return
					}
					tail, k, renamed := strings.Cut(r.Name, "~")
					if r.Cgroup != "/machine.slice/"+tail+".scope" {
						fail(fmt.Errorf("row %d: name %q with cgroup %q", r.ID, r.Name, r.Cgroup))
						return
					}
					if renamed && r.Unit != tail+"~"+k+".scope" || !renamed && r.Unit != "" {
						fail(fmt.Errorf("row %d: name %q with unit %q, torn", r.ID, r.Name, r.Unit))
						return
					}
					if r.Parent != contid.Unset {
						fail(fmt.Errorf("row %d: parent %d", r.ID, r.Parent))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	done.Store(true)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(h.r.Rows()); n != len(h.r.List()) || n != writers*perWriter {
		t.Errorf("%d rows, %d records, want %d", n, len(h.r.List()), writers*perWriter)
	}
	t.Logf("%d listings during %d tags", listings.Load(), writers*perWriter)
}
