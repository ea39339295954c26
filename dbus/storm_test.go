package dbus_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	cdbus "github.com/contid/contid/dbus"
)

// stormCyclesEnv sets the number of mkdir/rmdir cycles of TestMapStorm
// (default 10,000; 100,000 is the figure to run by hand).
const stormCyclesEnv = "CONTID_STORM_CYCLES"

// A mkdir/rmdir loop under an autotag parent gives every new cgroup a
// kernel tag and a claimed ID. One ReleaseGrace after the cgroups are gone,
// contidd has removed those entries again: every map that can grow is back
// within 1% of where it started. The control, a contidd that keeps them,
// shows the maps fill.
func TestMapStorm(t *testing.T) {
	cycles := 10000
	if v := os.Getenv(stormCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", stormCyclesEnv, v)
		}
		cycles = n
	}
	tests := []struct {
		name    string
		binary  func(*testing.T) string
		cycles  int
		release bool
	}{
		{name: "released", binary: contiddBinary, cycles: cycles, release: true},
		{name: "control_kept", binary: func(t *testing.T) string { return contiddVariant(t, "dbus.releaseKernel=no") }, cycles: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "")
			parent := e.cgroup("storm")
			d := e.startWith(daemonOptions{binary: tt.binary(t)}, "--autotag-parents", parent)
			maps := openPinnedMaps(t, e.pin)
			before := occupancy(t, maps)
			t.Logf("before: %s", formatOccupancy(before, maps))

			start := time.Now()
			dir := filepath.Join(e.cgRoot, parent)
			for i := 0; i < tt.cycles; i++ {
				p := filepath.Join(dir, fmt.Sprintf("c%d.scope", i))
				if err := syscall.Mkdir(p, 0o755); err != nil {
					t.Fatalf("mkdir %s: %v", p, err)
				}
				if err := syscall.Rmdir(p); err != nil {
					t.Fatalf("rmdir %s: %v", p, err)
				}
				if (i+1)%(max(tt.cycles/10, 1)) == 0 {
					t.Logf("%d of %d cycles, %s; cgroup_tags %d, id_claims %d", i+1, tt.cycles,
						time.Since(start).Round(time.Millisecond), count(t, maps["cgroup_tags"]), count(t, maps["id_claims"]))
				}
			}
			peak := occupancy(t, maps)
			t.Logf("after the storm (%s): %s", time.Since(start).Round(time.Millisecond), formatOccupancy(peak, maps))

			if !tt.release {
				// The entries of the control outlast the grace.
				time.Sleep(cdbus.ReleaseGrace + 3*time.Second)
				after := occupancy(t, maps)
				t.Logf("one grace later: %s", formatOccupancy(after, maps))
				for _, name := range []string{"cgroup_tags", "id_claims"} {
					if grew := after[name] - before[name]; grew < tt.cycles*9/10 {
						t.Errorf("control: %s grew by %d in %d cycles; want at least %d", name, grew, tt.cycles, tt.cycles*9/10)
					}
				}
				return
			}

			// contidd works through the storm's events, its exit check
			// visits 1,000 containers a second, then the grace runs.
			deadline := time.Now().Add(cdbus.ReleaseGrace + time.Duration(tt.cycles/1000*2)*time.Second + time.Minute)
			var after map[string]int
			for {
				after = occupancy(t, maps)
				if flat(before, after) == "" || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			t.Logf("settled after %s: %s", time.Since(start).Round(time.Second), formatOccupancy(after, maps))
			if msg := flat(before, after); msg != "" {
				t.Errorf("maps did not return within 1%% of where they started: %s\ncontidd log (tail):\n%s", msg, tail(d.logText(), 20))
			}
		})
	}
}

// openPinnedMaps opens every map contidd pinned under pin that grows by
// entries (hash maps; arrays, ring buffers and task storage have no
// occupancy to read this way).
func openPinnedMaps(t *testing.T, pin string) map[string]*ebpf.Map {
	t.Helper()
	ents, err := os.ReadDir(pin)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ebpf.Map{}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), "link_") || ent.IsDir() {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pin, ent.Name()), nil)
		if err != nil {
			continue // a program's pin, not a map
		}
		switch m.Type() {
		case ebpf.Hash, ebpf.LRUHash, ebpf.PerCPUHash, ebpf.LRUCPUHash:
			out[ent.Name()] = m
			t.Cleanup(func() { m.Close() })
		default:
			m.Close()
		}
	}
	for _, want := range []string{"cgroup_tags", "id_claims"} {
		if out[want] == nil {
			t.Fatalf("no pinned hash map %s under %s (have %v)", want, pin, ents)
		}
	}
	return out
}

// count walks a map's keys.
func count(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	n := 0
	var prev any // nil: the first key
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n
		}
		if err != nil {
			t.Fatalf("iterate %s: %v", m, err)
		}
		n++
		copy(key, next)
		prev = key
	}
}

func occupancy(t *testing.T, maps map[string]*ebpf.Map) map[string]int {
	out := map[string]int{}
	for name, m := range maps {
		out[name] = count(t, m)
	}
	return out
}

func formatOccupancy(o map[string]int, maps map[string]*ebpf.Map) string {
	var parts []string
	for name, n := range o {
		parts = append(parts, fmt.Sprintf("%s %d/%d", name, n, maps[name].MaxEntries()))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// flat says which maps are not within 1% of where they started.
func flat(before, after map[string]int) string {
	var bad []string
	for name, b := range before {
		if d := after[name] - b; d > b/100 || -d > b/100 {
			bad = append(bad, fmt.Sprintf("%s %d -> %d", name, b, after[name]))
		}
	}
	slices.Sort(bad)
	return strings.Join(bad, ", ")
}
