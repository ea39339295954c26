package audit

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// spoolRecord is a netlink message as the kernel sends one audit record.
func spoolRecord(serial uint32, pad int) []byte {
	body := fmt.Sprintf("audit(1700000000.000:%d): pid=1 x=%s", serial, strings.Repeat("y", pad))
	b := make([]byte, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], 1300)
	copy(b[unix.NLMSG_HDRLEN:], body)
	return b
}

// receiveInto does what Reader.receive and Reader.push do with a spool,
// with rec standing for what the kernel sent as an event of one record,
// handed on at once; commit false stops between the receive and the
// commit, as a SIGKILL there would.
func receiveInto(s *Spool, rec []byte, serial uint32, commit bool) {
	slot := s.slot()
	copy(slot, rec)
	if !commit {
		return
	}
	s.commit(len(rec))
	s.mark(serial, s.slotAt, len(rec), true)
	s.handOn(serial, 1, true)
}

// doneUpTo reports the events up to serial done, in order.
func doneUpTo(s *Spool, serial uint32) {
	for i := uint32(1); i <= serial; i++ {
		s.Done(i)
	}
}

func pendingSerials(t *testing.T, s *Spool) ([]uint32, uint64) {
	t.Helper()
	recs, lost := s.pending()
	var out []uint32
	for _, r := range recs {
		_, serial, _, err := parseHeader(trimPayload(r.b[unix.NLMSG_HDRLEN:]))
		if err != nil {
			t.Fatalf("replayed record at %d does not parse: %v", r.pos, err)
		}
		out = append(out, serial)
	}
	return out, lost
}

// TestSpoolReplay: what a successor replays from a spool whose writer
// died, for the ways a writer can die.
func TestSpoolReplay(t *testing.T) {
	size := 8 * slotMax
	for _, tc := range []struct {
		name string
		// records are written with serials 1..records, each pad bytes
		// of payload; done is the last Done (0: none).
		records, pad int
		done         uint32
		uncommitted  bool // one more record received, not committed
		want         []uint32
		wantLost     uint64
	}{
		{name: "nothing done", records: 3, want: []uint32{1, 2, 3}},
		{name: "some done", records: 5, done: 3, want: []uint32{4, 5}},
		{name: "all done", records: 5, done: 5},
		{name: "killed between receive and commit", records: 2, done: 1, uncommitted: true, want: []uint32{2, 3}},
		// Small records lap the ring many times; what is done makes room.
		{name: "many laps", records: 5000, pad: 100, done: 4997, want: []uint32{4998, 4999, 5000}},
		// Nothing is done and records fill the ring: the oldest go, and
		// are counted.
		{name: "full of unwritten", records: 40, pad: 2000, wantLost: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSpool(size)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := 1; i <= tc.records; i++ {
				receiveInto(s, spoolRecord(uint32(i), tc.pad), uint32(i), true)
				if tc.done != 0 && tc.records > 100 && uint32(i) > 3 && uint32(i)-3 <= tc.done {
					s.Done(uint32(i) - 3)
				}
			}
			if tc.done != 0 {
				doneUpTo(s, tc.done)
			}
			if tc.uncommitted {
				next := uint32(tc.records + 1)
				receiveInto(s, spoolRecord(next, tc.pad), next, false)
			}
			// The successor maps the same memfd.
			again, err := OpenSpool(s.File())
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			got, lost := pendingSerials(t, again)
			if tc.name == "full of unwritten" {
				// The ring holds a contiguous run ending at the last
				// record; everything before it was evicted, and with
				// nothing ever done, all of that is counted lost.
				if len(got) == 0 || got[len(got)-1] != uint32(tc.records) || s.evicted.Load() != uint64(tc.records-len(got)) || lost != s.evicted.Load() {
					t.Fatalf("replayed %v, %d counted lost; evicted %d of %d", got, lost, s.evicted.Load(), tc.records)
				}
				// Once a replay counted them, a later one does not.
				again.forgetEvicted()
				if _, lost := pendingSerials(t, again); lost != 0 {
					t.Fatalf("counted again after a replay: %d", lost)
				}
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || lost != tc.wantLost {
				t.Fatalf("replayed %v (lost %d), want %v (lost %d)", got, lost, tc.want, tc.wantLost)
			}
		})
	}
}

// TestSpoolEvictedCounted: events evicted before they were done are
// counted as lost by a successor; with Done past them, they are not.
func TestSpoolEvictedCounted(t *testing.T) {
	s, err := NewSpool(8 * slotMax)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint32(1); i <= 40; i++ {
		receiveInto(s, spoolRecord(i, 2000), i, true)
	}
	again, err := OpenSpool(s.File())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, lost := pendingSerials(t, again)
	if len(got) == 0 || uint64(got[0]-1) != lost || lost != s.evicted.Load() {
		t.Fatalf("replayed %v, lost %d, evicted %d: the replay must start right after what it counts lost", got, lost, s.evicted.Load())
	}
	doneUpTo(s, got[0])
	if _, lost := pendingSerials(t, again); lost != 0 {
		t.Fatalf("with every evicted event done, %d still counted lost", lost)
	}
}

// TestSpoolMismatch: a memfd that is not a spool of this boot is refused.
func TestSpoolMismatch(t *testing.T) {
	s, err := NewSpool(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	copy(s.mem[offBoot:], "00000000-0000-0000-0000-000000000000")
	if _, err := OpenSpool(s.File()); err != ErrSpoolMismatch {
		t.Fatalf("a spool of another boot: %v", err)
	}
}

// BenchmarkSpoolRecord: what the spool adds to each record read (a slot
// zeroed, the record received into it, committed and marked, its event
// marked done), against copying the record into a reused buffer as a
// reader without a spool does.
func BenchmarkSpoolRecord(b *testing.B) {
	rec := spoolRecord(1, 300)
	b.Run("buffer", func(b *testing.B) {
		buf := make([]byte, slotMax)
		b.SetBytes(int64(len(rec)))
		for i := 0; i < b.N; i++ {
			copy(buf, rec)
		}
	})
	b.Run("spool", func(b *testing.B) {
		s, err := NewSpool(0)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.SetBytes(int64(len(rec)))
		for i := 0; i < b.N; i++ {
			serial := uint32(i + 1)
			receiveInto(s, rec, serial, true)
			s.Done(serial)
		}
	})
}
