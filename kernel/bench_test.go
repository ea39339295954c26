package kernel

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/contid/contid"
)

// BenchmarkAttribute is the per-audit-record cost of resolving an exited
// or live process: one pid_tags lookup plus the clock conversion.
func BenchmarkAttribute(b *testing.B) {
	requireBPF(b)
	bpf := loadTest(b, testPinDir(b))
	pid := uint32(os.Getpid())
	pt := pidTag{Cur: pidRecord{Id: 42, StartNs: 1}}
	if err := bpf.maps.PidTags.Put(pid, pt); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		id, how, _, err := bpf.Attribute(pid, 0, now)
		if err != nil || id != 42 || how != contid.LiveProcess {
			b.Fatalf("Attribute = %d, %d, %v", id, how, err)
		}
	}
}

// BenchmarkPIDID is the cost of a live lookup: pidfd_open plus a task
// storage lookup.
func BenchmarkPIDID(b *testing.B) {
	requireBPF(b)
	bpf := loadTest(b, testPinDir(b))
	pid := uint32(os.Getpid())
	b.ReportAllocs()
	for b.Loop() {
		// The benchmark process itself is untagged.
		if id, err := bpf.PIDID(pid); !errors.Is(err, ErrNotTagged) {
			b.Fatalf("PIDID = %d, %v; want ErrNotTagged", id, err)
		}
	}
}
