package audit

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// typedRecord is a netlink message as the kernel sends one audit record
// of type typ.
func typedRecord(typ auparse.AuditMessageType, serial uint32) []byte {
	body := fmt.Sprintf("audit(1700000000.000:%d): pid=1 uid=0 msg='x'", serial)
	b := make([]byte, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], uint16(typ))
	copy(b[unix.NLMSG_HDRLEN:], body)
	return b
}

// heldHandler stands for the forwarder: it reports events done in the
// order it got them, once release lets it (a queue in front of a slow
// journald holds the rest).
type heldHandler struct {
	sp   *Spool
	got  []uint32
	done int
}

func (h *heldHandler) HandleEvent(ev *Event)     { h.got = append(h.got, ev.Serial) }
func (*heldHandler) HandleLoss(LossKind, uint64) {}
func (*heldHandler) Tick(time.Time)              {}
func (h *heldHandler) release(n int) {
	for ; n > 0 && h.done < len(h.got); n-- {
		h.sp.Done(h.got[h.done])
		h.done++
	}
}

// TestSpoolDoneOrder: a successor replays every event a killed reader
// had read and not written, when events complete out of serial order. The
// reassembler hands events on in serial order except for records that
// come after a later serial was handed on (the first records of an event
// that took its serial early, or the rest of one the reassembler gave up
// on); a watermark set from each written event's serial alone passes
// those, and the replay skipped them.
func TestSpoolDoneOrder(t *testing.T) {
	const (
		syscall   = auparse.AUDIT_SYSCALL
		proctitle = auparse.AUDIT_PROCTITLE
		user      = auparse.AUDIT_USER_AVC
		avc       = auparse.AUDIT_AVC
	)
	type step struct {
		typ    auparse.AuditMessageType
		serial uint32
		// release, if set, lets the handler report this many more
		// events done instead of reading a record.
		release int
	}
	rec := func(typ auparse.AuditMessageType, serial uint32) step { return step{typ: typ, serial: serial} }
	release := func(n int) step { return step{release: n} }
	for _, tc := range []struct {
		name string
		// inFlight is the reassembler's window (1: it gives up on an
		// event as soon as a second one starts).
		inFlight int
		steps    []step
		// want is the serials the successor replays.
		want []uint32
	}{
		{name: "in order, all written", inFlight: 100,
			steps: []step{rec(user, 9), rec(syscall, 10), rec(proctitle, 10), release(2)}},
		{name: "in order, one being assembled", inFlight: 100,
			steps: []step{rec(user, 9), rec(syscall, 10), release(1)}, want: []uint32{10}},
		{name: "first record after a later event was written", inFlight: 100,
			steps: []step{rec(user, 11), release(1), rec(syscall, 10)}, want: []uint32{10}},
		{name: "rest of an event given up on", inFlight: 1,
			steps: []step{rec(avc, 10), rec(user, 11), release(2), rec(syscall, 10)}, want: []uint32{10}},
		{name: "handed on after a later one, still queued", inFlight: 100,
			steps: []step{rec(user, 11), rec(syscall, 10), rec(proctitle, 10), release(1)}, want: []uint32{10}},
		{name: "late event written too", inFlight: 100,
			steps: []step{rec(user, 11), rec(syscall, 10), rec(proctitle, 10), rec(user, 12), release(3)}},
		{name: "serial wraps, in order", inFlight: 100,
			steps: []step{rec(user, 0xfffffffe), rec(user, 0xffffffff), rec(user, 0), rec(syscall, 1), release(3)}, want: []uint32{1}},
		{name: "serial wraps, first record late", inFlight: 100,
			steps: []step{rec(user, 0), rec(user, 1), release(2), rec(syscall, 0xffffffff)}, want: []uint32{0xffffffff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := NewSpool(8 * slotMax)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			h := &heldHandler{sp: sp}
			r := &Reader{cfg: Config{Spool: sp}, handler: h}
			r.cfg.setDefaults()
			if r.reasm, err = libaudit.NewReassembler(tc.inFlight, time.Hour, (*stream)(r)); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.steps {
				if st.release > 0 {
					h.release(st.release)
					continue
				}
				b, pos, err := receiveRecord(sp, typedRecord(st.typ, st.serial))
				if err != nil {
					t.Fatal(err)
				}
				r.take(b, pos)
			}
			// Killed here: the successor maps the same memfd.
			again, err := OpenSpool(sp.File())
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			got, lost := pendingSerials(t, again)
			got = slices.Compact(got)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || lost != 0 {
				t.Fatalf("handed on %v, %d done; replayed %v (lost %d), want %v", h.got, h.done, got, lost, tc.want)
			}
		})
	}
}

// receiveRecord does what Reader.receive does with a spool, with b
// standing for what the kernel sent.
func receiveRecord(sp *Spool, b []byte) ([]byte, uint64, error) {
	slot := sp.slot()
	n := copy(slot, b)
	sp.commit(n)
	return slot[:n], sp.slotAt, nil
}

// lossCounter counts what a reader reports lost, and reports each event
// done at once, as a forwarder writing synchronously does.
type lossCounter struct {
	sp   *Spool
	lost uint64
}

func (h *lossCounter) HandleEvent(ev *Event) {
	if h.sp != nil {
		h.sp.Done(ev.Serial)
	}
}
func (h *lossCounter) HandleLoss(_ LossKind, n uint64) { h.lost += n }
func (*lossCounter) Tick(time.Time)                    {}

// TestUnicastGapsCounted: a unicast reader counts as lost exactly the
// serials that never came, however its events complete: late records of
// an event (delivered after a later serial) and serials a successor skips
// in the spool because the killed reader had written them are no gaps.
// A serial that never came is one, so the count is not simply zero, and
// so is an event that came without its SYSCALL record, once.
func TestUnicastGapsCounted(t *testing.T) {
	const (
		syscall   = auparse.AUDIT_SYSCALL
		proctitle = auparse.AUDIT_PROCTITLE
		user      = auparse.AUDIT_USER_AVC
		avc       = auparse.AUDIT_AVC
	)
	type rec struct {
		typ    auparse.AuditMessageType
		serial uint32
	}
	for _, tc := range []struct {
		name     string
		inFlight int
		// killed, if set, is read by a reader that is killed (its
		// handler keeps everything from the first record of serial
		// held on unwritten); recs are then read by its successor on
		// the same spool.
		killed []rec
		hold   uint32
		recs   []rec
		want   uint64
	}{
		{name: "in order", inFlight: 100,
			recs: []rec{{user, 1}, {user, 2}, {user, 3}}},
		{name: "one serial never came", inFlight: 100,
			recs: []rec{{user, 1}, {user, 2}, {user, 4}}, want: 1},
		{name: "rest of an event given up on", inFlight: 1,
			recs: []rec{{avc, 10}, {user, 11}, {syscall, 10}, {proctitle, 10}, {user, 12}}},
		{name: "first record after a later event", inFlight: 100,
			recs: []rec{{user, 9}, {user, 11}, {syscall, 10}, {proctitle, 10}, {user, 12}}},
		{name: "headless event", inFlight: 100,
			recs: []rec{{user, 1}, {proctitle, 2}, {user, 3}}, want: 1},
		{name: "gap and headless event, each once", inFlight: 100,
			recs: []rec{{user, 1}, {proctitle, 3}, {user, 4}}, want: 2},
		{name: "successor skips what the killed reader wrote", inFlight: 100,
			killed: []rec{{user, 9}, {user, 11}, {syscall, 10}, {proctitle, 10}}, hold: 10,
			recs: []rec{{user, 12}, {user, 13}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := NewSpool(8 * slotMax)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			newReader := func(sp *Spool, h Handler) *Reader {
				r := &Reader{cfg: Config{Spool: sp, Source: Unicast}, handler: h}
				r.cfg.setDefaults()
				if r.reasm, err = libaudit.NewReassembler(tc.inFlight, time.Hour, (*stream)(r)); err != nil {
					t.Fatal(err)
				}
				return r
			}
			read := func(r *Reader, sp *Spool, recs []rec) {
				for _, rc := range recs {
					b, pos, err := receiveRecord(sp, typedRecord(rc.typ, rc.serial))
					if err != nil {
						t.Fatal(err)
					}
					r.take(b, pos)
				}
			}
			if tc.killed != nil {
				h := &heldHandler{sp: sp}
				read(newReader(sp, h), sp, tc.killed)
				for h.done < len(h.got) && h.got[h.done] != tc.hold {
					h.release(1)
				}
				// The successor maps the same memfd.
				if sp, err = OpenSpool(sp.File()); err != nil {
					t.Fatal(err)
				}
				defer sp.Close()
			}
			h := &lossCounter{sp: sp}
			r := newReader(sp, h)
			r.replaySpool()
			read(r, sp, tc.recs)
			_ = r.reasm.Close()
			r.tick(time.Now().Add(time.Hour))
			if h.lost != tc.want {
				t.Fatalf("%d counted lost, want %d", h.lost, tc.want)
			}
		})
	}
}

// eventRecorder keeps what each event handed on was attributed to.
type eventRecorder struct{ got []string }

func (h *eventRecorder) HandleEvent(ev *Event) {
	h.got = append(h.got, fmt.Sprintf("%d:%s:%d", ev.Serial, strings.Join(ev.TypeNames(nil), ","), ev.Container))
}
func (*eventRecorder) HandleLoss(LossKind, uint64) {}
func (*eventRecorder) Tick(time.Time)              {}

// TestRestOfEventAttributed: when reassembly gives up on an event before
// all its records came, the rest comes as an event of its own with no
// record that names the process. It goes to the container of the first
// part; before, it was unattributed, and so never written. Only the rest
// of an event handed on is: records of a serial never seen stay
// unattributed.
func TestRestOfEventAttributed(t *testing.T) {
	const id = 7
	rec := func(typ auparse.AuditMessageType, serial uint32, body string) []byte {
		text := fmt.Sprintf("audit(1700000000.000:%d): %s", serial, body)
		b := make([]byte, unix.NLMSG_HDRLEN+len(text))
		binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:6], uint16(typ))
		copy(b[unix.NLMSG_HDRLEN:], text)
		return b
	}
	syscall := func(serial uint32) []byte {
		return rec(auparse.AUDIT_SYSCALL, serial, "arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=42 uid=0 comm=\"true\"")
	}
	execve := func(serial uint32) []byte {
		return rec(auparse.AUDIT_EXECVE, serial, "argc=2 a0=\"true\" a1=\"marker\"")
	}
	proctitle := func(serial uint32) []byte { return rec(auparse.AUDIT_PROCTITLE, serial, "proctitle=74727565") }
	user := func(serial uint32) []byte { return rec(auparse.AUDIT_USER_AVC, serial, "pid=1 uid=0 msg='x'") }
	for _, tc := range []struct {
		name string
		recs [][]byte
		want []string
	}{
		{name: "whole event", recs: [][]byte{syscall(10), execve(10), proctitle(10)},
			want: []string{"10:SYSCALL,EXECVE,PROCTITLE:7"}},
		{name: "rest after reassembly gave up", recs: [][]byte{syscall(10), user(11), execve(10), proctitle(10)},
			want: []string{"10:SYSCALL:7", "11:USER_AVC:7", "10:EXECVE,PROCTITLE:7"}},
		{name: "rest of an event never seen", recs: [][]byte{user(11), execve(10), proctitle(10)},
			want: []string{"11:USER_AVC:7", "10:EXECVE,PROCTITLE:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &eventRecorder{}
			r := &Reader{attr: fakeAttributor{id: id, how: contid.LiveProcess}, handler: h}
			r.cfg.setDefaults()
			var err error
			if r.reasm, err = libaudit.NewReassembler(1, time.Hour, (*stream)(r)); err != nil {
				t.Fatal(err)
			}
			for _, b := range tc.recs {
				r.take(b, 0)
			}
			_ = r.reasm.Close()
			if fmt.Sprint(h.got) != fmt.Sprint(tc.want) {
				t.Fatalf("handed on %v, want %v", h.got, tc.want)
			}
		})
	}
}

// A successor's known serials may overlap: the evicted range is a range,
// and a serial written above the watermark can lie inside it. Each
// serial of a gap is covered once however many ranges hold it, so the
// count never exceeds the gap (it used to wrap past zero).
func TestGapCoveredOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		known []serialRange
		gap   serialRange
		want  uint64
	}{
		{"no known serials", nil, serialRange{100, 110}, 0},
		{"disjoint", []serialRange{{100, 104}, {106, 110}}, serialRange{100, 110}, 10},
		{"inside the evicted range", []serialRange{{100, 110}, {105, 105}}, serialRange{100, 110}, 11},
		{"the same serial twice", []serialRange{{105, 105}, {105, 105}}, serialRange{100, 110}, 1},
		{"ranges past the gap", []serialRange{{90, 102}, {108, 120}}, serialRange{100, 110}, 6},
		{"across the counter's wrap", []serialRange{{0xfffffffe, 1}, {0, 0}}, serialRange{0xfffffffd, 2}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := covered(tc.gap, tc.known); got != tc.want {
				t.Fatalf("covered = %d, want %d", got, tc.want)
			}
		})
	}
}

// The attack that found the overlap, on a real spool: event 100's first
// record waits for the rest, 101..104 are written meanwhile, and the ring
// fills with events queued for a stalled journald until it evicts. The
// successor's count of evicted events leaves out the four written ones,
// and it counts no gap: every serial it does not see again was written
// or is among the evicted.
func TestSpoolEvictedNotWritten(t *testing.T) {
	sp, err := NewSpool(4 * slotMax)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	add := func(serial uint32) {
		b := typedRecord(auparse.AUDIT_USER_AVC, serial)
		pos := sp.append(b)
		sp.mark(serial, pos, len(b), true)
	}
	add(100)
	for s := uint32(101); s <= 104; s++ {
		add(s)
		sp.handOn(s, 1, true)
		sp.Done(s)
	}
	next := uint32(105)
	for ; ; next++ {
		if lo, hi, ok := sp.evictedRange(); ok && hi-lo > 8 {
			break
		}
		add(next)
		sp.handOn(next, 1, true)
	}
	lo, hi, _ := sp.evictedRange()
	written := 0
	for _, s := range sp.doneAboveList() {
		if s >= lo && s <= hi {
			written++
		}
	}
	if written == 0 {
		t.Fatalf("setup: no written serial among the evicted %d..%d (done above: %v)", lo, hi, sp.doneAboveList())
	}
	if got, want := sp.evictedUnwritten(), uint64(hi-lo+1)-uint64(written); got != want {
		t.Errorf("evicted unwritten %d, want %d (%d..%d less the %d written)", got, want, lo, hi, written)
	}

	h := &lossCounter{}
	r := &Reader{cfg: Config{Source: Unicast, ReassemblyTimeout: time.Second}, handler: h}
	r.gaps.fromSpool(sp)
	recs, _ := sp.pending()
	r.seen(100)
	for s := next - uint32(len(recs)); s < next; s++ {
		r.seen(s)
	}
	r.seen(next)
	r.claimSuspects(time.Time{}, true)
	if h.lost != 0 {
		t.Errorf("the successor counted %d serials lost as gaps, want 0", h.lost)
	}
}
