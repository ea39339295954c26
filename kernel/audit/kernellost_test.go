package audit

import (
	"testing"
	"time"
)

// TestKernelLostSettled: as the audit daemon, the rise of the kernel's
// lost counter is counted only for what the stream does not show lost
// (serial gaps and headless events, which the reader counts itself), and
// only once the reader has caught up; over multicast it counts as it
// comes. The control is the case with no trace in the stream: the whole
// rise counts.
func TestKernelLostSettled(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	type step struct {
		at     time.Duration // after t0
		rise   uint64        // the poller saw the counter rise by this
		stream uint64        // the stream showed this many lost
		empty  bool          // a read found the socket empty
	}
	for _, tc := range []struct {
		name   string
		source Source
		steps  []step
		check  time.Duration // settle (not forced) at t0+check
		want   uint64
		force  bool
	}{
		{name: "no trace: the rise counts", source: Unicast,
			steps: []step{{at: 0, rise: 5}, {at: time.Second, empty: true}},
			check: 10 * time.Second, want: 5},
		{name: "gaps and headless events cover the rise", source: Unicast,
			steps: []step{{at: 0, rise: 6}, {at: 8 * time.Second, stream: 7236}, {at: 9 * time.Second, stream: 4}, {at: 9 * time.Second, empty: true}},
			check: 20 * time.Second, want: 0},
		{name: "only the part the stream does not show", source: Unicast,
			steps: []step{{at: 0, rise: 6}, {at: 2 * time.Second, stream: 4}, {at: 3 * time.Second, empty: true}},
			check: 20 * time.Second, want: 2},
		{name: "trace seen before the rise was polled", source: Unicast,
			steps: []step{{at: 0, stream: 3}, {at: time.Second, rise: 3}, {at: time.Second, empty: true}},
			check: 10 * time.Second, want: 0},
		{name: "old credit lapses", source: Unicast,
			steps: []step{{at: 0, stream: 3}, {at: time.Minute, rise: 3}, {at: time.Minute, empty: true}},
			check: 2 * time.Minute, want: 3},
		{name: "not caught up: waits", source: Unicast,
			steps: []step{{at: 0, rise: 4}},
			check: 30 * time.Second, want: 0},
		{name: "not caught up for long: counts", source: Unicast,
			steps: []step{{at: 0, rise: 4}},
			check: settleMax, want: 4},
		{name: "stopping: counts what is left", source: Unicast,
			steps: []step{{at: 0, rise: 4}, {at: 0, stream: 1}},
			check: time.Second, force: true, want: 3},
		{name: "multicast: at once, stream aside", source: Multicast,
			steps: []step{{at: 0, stream: 9}, {at: 0, rise: 4}},
			check: 0, want: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &lossCounter{}
			r := &Reader{cfg: Config{Source: tc.source}, handler: h}
			r.cfg.setDefaults()
			var counter uint32 = 100
			for _, s := range tc.steps {
				now := t0.Add(s.at)
				if s.rise > 0 {
					counter += uint32(s.rise)
					r.kfeed.add(s.rise, counter)
				}
				r.takeKernelLost(now)
				r.streamLost(s.stream, now)
				if s.empty {
					r.readEmpty(now)
				}
				r.settleKernelLost(now, false)
			}
			r.settleKernelLost(t0.Add(tc.check), tc.force)
			if h.lost != tc.want {
				t.Fatalf("counted %d, want %d", h.lost, tc.want)
			}
			// The counter value up to which the rise is counted moves
			// only once it is.
			settled := r.kacct.pending == 0
			if got := r.lostCounted.Load(); settled != (got == counter) {
				t.Fatalf("counted through %d with the counter at %d, settled %v", got, counter, settled)
			}
		})
	}
}

// TestLostWhileAwayOnce: a contidd killed after it counted a rise of the
// kernel's lost counter but before it saved its position left the value
// it counted up to in the spool; the successor counts only the rise
// since, settling it as the killed one would have. The control is the
// successor without that value (a spool from an older contidd), which
// counts the rise from the saved position at once: no stream loss of its
// own may meet it (see TestLostWhileAwayCountedAtOnce).
func TestLostWhileAwayOnce(t *testing.T) {
	boot := BootID()
	if boot == "" {
		t.Fatal("no boot ID")
	}
	for _, tc := range []struct {
		name     string
		counted  uint32 // what the killed reader counted up to (0: not in its spool)
		saved    uint32 // the kernel's counter in its last saved position
		now      uint32 // the kernel's counter when the successor starts
		wantRise uint64 // left to settle
		wantLost uint64 // counted at once
	}{
		{name: "rise counted before the kill", counted: 15, saved: 10, now: 15, wantRise: 0},
		{name: "and more since", counted: 15, saved: 10, now: 17, wantRise: 2},
		{name: "counter reset since", counted: 15, saved: 10, now: 3, wantRise: 3},
		{name: "spool without the value: the saved position", saved: 10, now: 15, wantLost: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := NewSpool(8 * slotMax)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if tc.counted != 0 {
				// The killed reader (multicast: it counts at once).
				killed := &Reader{cfg: Config{Source: Multicast, Spool: sp}, handler: &lossCounter{}}
				killed.kfeed.add(uint64(tc.counted-tc.saved), tc.counted)
				killed.takeKernelLost(time.Now())
			}
			next, err := OpenSpool(sp.File())
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			h := &lossCounter{}
			r := &Reader{cfg: Config{Source: Unicast, Spool: next, After: &Position{Boot: boot, Serial: 1, Lost: tc.saved}}, boot: boot, handler: h}
			r.lostWhileAway(tc.now)
			if rise, at, _ := r.kfeed.take(); rise != tc.wantRise || h.lost != tc.wantLost || tc.wantLost == 0 && at != tc.now {
				t.Fatalf("successor settles a rise of %d and counts %d at once, want %d and %d", rise, h.lost, tc.wantRise, tc.wantLost)
			}
			if got, _ := next.kernelLost(); got != tc.now && tc.wantLost > 0 {
				t.Fatalf("counted at once up to %d, want %d", got, tc.now)
			}
		})
	}
}

// TestKilledMidSettlement: a reader killed after the stream showed
// losses and the kernel's counter rose for them, but before it settled
// the rise, leaves the losses it counted from the stream in the spool
// beside the counter value it had settled up to. The successor settles
// the rise since against them, as the killed reader would have, and
// counts nothing more. The control, a spool that does not keep them,
// counts the rise a second time.
func TestKilledMidSettlement(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep bool
		want uint64
	}{
		{"kept", true, 0},
		{"control-not-kept", false, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := NewSpool(8 * slotMax)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			t0 := time.Now()
			killed := &Reader{cfg: Config{Source: Unicast, Spool: sp}, handler: &lossCounter{}}
			killed.cfg.setDefaults()
			killed.setCounted(100)
			killed.streamLost(7000, t0)
			killed.kfeed.add(5, 105)
			killed.takeKernelLost(t0)
			killed.readEmpty(t0)
			killed.settleKernelLost(t0.Add(time.Second), false)
			if killed.kacct.pending != 5 {
				t.Fatalf("the killed reader settled already: pending %d", killed.kacct.pending)
			}
			if !tc.keep {
				sp.setCredit(0)
			}
			next, err := OpenSpool(sp.File())
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			h := &lossCounter{}
			r := &Reader{cfg: Config{Source: Unicast, Spool: next}, handler: h}
			r.cfg.setDefaults()
			now := time.Now()
			r.lostWhileAway(105)
			r.takeKernelLost(now)
			r.readEmpty(now)
			r.settleKernelLost(now.Add(r.settleDelay()), false)
			if r.kacct.pending != 0 || h.lost != tc.want {
				t.Fatalf("successor: pending %d, counted %d, want %d", r.kacct.pending, h.lost, tc.want)
			}
		})
	}
}

// TestLostWhileAwayCountedAtOnce: the kernel's counter rose by 100 while
// no contidd read (records dropped before they took a serial), and the
// new reader's stream then shows 100 serials lost that the kernel did not
// count (without audit=1, kauditd drops a record it cannot deliver
// silently). The stream's losses are counted as reader losses; the rise
// must be counted too, not settled against them. A killed predecessor's
// spool is the other case: its stream losses (credit) met the rise in its
// own life, and the successor settles the rise against them.
func TestLostWhileAwayCountedAtOnce(t *testing.T) {
	boot := BootID()
	if boot == "" {
		t.Fatal("no boot ID")
	}
	for _, tc := range []struct {
		name        string
		spoolCredit uint64 // the killed predecessor's stream losses not yet settled; 0: a stop
		want        uint64
	}{
		{"after a stop", 0, 100},
		{"after a kill", 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &lossCounter{}
			r := &Reader{cfg: Config{Source: Unicast, After: &Position{Boot: boot, Serial: 1, Lost: 10}}, boot: boot, handler: h}
			if tc.spoolCredit > 0 {
				sp, err := NewSpool(8 * slotMax)
				if err != nil {
					t.Fatal(err)
				}
				defer sp.Close()
				sp.setKernelLost(10)
				sp.setCredit(tc.spoolCredit)
				r.cfg.Spool = sp
			}
			r.cfg.setDefaults()
			t0 := time.Now()
			r.lostWhileAway(110)
			if tc.spoolCredit == 0 {
				r.streamLost(100, t0)
			}
			r.takeKernelLost(t0)
			r.readEmpty(t0)
			r.settleKernelLost(t0.Add(time.Minute), false)
			if h.lost != tc.want {
				t.Fatalf("counted %d of the kernel's rise of 100, want %d", h.lost, tc.want)
			}
		})
	}
}
