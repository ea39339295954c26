package registry

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/contid/contid"
)

const benchContainers = 10000

// benchRegistry registers 10,000 containers spread over 100 slices, some
// nested, as a busy host would have them.
func benchRegistry(b *testing.B) *harness {
	b.Helper()
	return fill(b, newHarness(b, Config{Logf: func(string, ...any) {}, MaxContainers: 1 << 30}))
}

func fill(b *testing.B, h *harness) *harness {
	b.Helper()
	// Bulk setup without an fsync per record: write straight to memory
	// and compact once, as Open would after loading them.
	h.r.change.Lock()
	for i := range benchContainers {
		p := fmt.Sprintf("/machine.slice/s%d.slice/c%d.scope", i%100, i)
		e := h.r.newEntry(orchestrator, contid.ID(i+1), nil, Options{AllowNesting: true})
		e.c.Cgroups = []Cgroup{{Path: p, ID: uint64(1_000_000 + i)}}
		h.r.byID[e.c.ID] = e
		h.r.index(e)
		h.r.raise(e.c.ID)
	}
	if err := h.r.st.compact(h.r); err != nil {
		b.Fatal(err)
	}
	h.r.change.Unlock()
	h.reopen()
	if h.r.Active() != benchContainers {
		b.Fatalf("%d active", h.r.Active())
	}
	return h
}

// BenchmarkTagCgroup is the hot path: decide, allocate, kernel call
// (fake), journal line (synced in the background, plus a lease sync per
// leaseBlock IDs), publish. It reports p50 and p99 latency: on disk (the
// test's temp dir), and on tmpfs where a sync costs nothing, to separate
// the registry's own cost from the disk's; and the journal fdatasyncs per
// tag, the flusher's included.
func BenchmarkTagCgroup(b *testing.B) {
	b.Run("disk", func(b *testing.B) { benchTag(b, benchRegistry(b)) })
	b.Run("tmpfs", func(b *testing.B) {
		if _, err := os.Stat("/dev/shm"); err != nil {
			b.Skip("skipped: no /dev/shm")
		}
		h := newHarness(b, Config{Logf: func(string, ...any) {}, MaxContainers: 1 << 30})
		h.r.Close()
		dir, err := os.MkdirTemp("/dev/shm", "contid-registry-bench-")
		if err != nil {
			b.Skipf("skipped: %v", err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		h.dir = dir
		h.open()
		benchTag(b, fill(b, h))
	})
}

func benchTag(b *testing.B, h *harness) {
	lat := make([]time.Duration, 0, b.N)
	syncs := h.r.st.syncs.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % benchContainers
		t := CgroupTarget{Path: fmt.Sprintf("/machine.slice/s%d.slice/c%d.scope/n%d", k%100, k, i), ID: uint64(5_000_000 + i)}
		t0 := time.Now()
		_, err := h.r.TagCgroup(orchestrator, 0, t, Options{})
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(h.r.st.syncs.Load()-syncs)/float64(len(lat)), "syncs/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	// The worst call: a journal grow or a compaction, which run on the
	// tagging path, show here and nowhere else.
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}

func BenchmarkGet(b *testing.B) {
	h := benchRegistry(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := h.r.Get(contid.ID(i%benchContainers + 1)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnclosing(b *testing.B) {
	h := benchRegistry(b)
	paths := make([]string, 1000)
	for i := range paths {
		k := i * 7
		paths[i] = fmt.Sprintf("/machine.slice/s%d.slice/c%d.scope/payload/x", k%100, k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := h.r.Enclosing(paths[i%len(paths)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	h := benchRegistry(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.reopen()
	}
}

// BenchmarkByCgroupPathMiss is the lookup every TagCgroup of a new cgroup
// makes first (the D-Bus layer asks whether the kernel autotagged it).
func BenchmarkByCgroupPathMiss(b *testing.B) {
	h := benchRegistry(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.r.ByCgroupPath("/machine.slice/new.scope"); err == nil {
			b.Fatal("found")
		}
	}
}

// BenchmarkListing is what a ListContainers of 10,000 containers costs the
// registry: whole copies of every record (List) against the rows a
// listing shows (Rows). The bytes and allocations per op are garbage the
// collector must then chase while every other call waits on it.
func BenchmarkListing(b *testing.B) {
	h := benchRegistry(b)
	for _, bc := range []struct {
		name string
		list func() int
	}{
		{"List", func() int { return len(h.r.List()) }},
		{"Rows", func() int { return len(h.r.Rows()) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if n := bc.list(); n != benchContainers {
					b.Fatalf("%d listed, want %d", n, benchContainers)
				}
			}
		})
	}
}
