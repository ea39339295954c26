package audit

import (
	"cmp"
	"slices"
	"time"
)

// serialGaps counts the serials that never came. Events are handed on in
// serial order, so a serial skipped between two handed on is missing,
// with two exceptions: records of an event that come after a later serial
// was handed on (the first records of an event that took its serial
// early, or the rest of one the reassembler gave up on), and serials a
// successor does not replay because the contidd before it wrote them.
// The first are found when they come: a unicast reader holds each gap
// for a reassembly timeout before it counts it, and a serial that comes
// meanwhile leaves it. The second are known from the spool.
type serialGaps struct {
	high    uint32
	hasHigh bool
	// floor: serials up to it were handed on by the contidd before, or
	// are replayed late; none of them starts a gap.
	floor    uint32
	hasFloor bool
	// known are serials that are no gap: written before a kill, or
	// evicted from the spool (counted there).
	known []serialRange
	// suspects are gaps not yet counted (unicast).
	suspects []suspectGap
}

type serialRange struct{ lo, hi uint32 }

func (g serialRange) has(serial uint32) bool {
	return int32(serial-g.lo) >= 0 && int32(g.hi-serial) >= 0
}

type suspectGap struct {
	serialRange
	n     uint64
	at    time.Time
	found map[uint32]bool
}

// fromSpool takes what a spool about to be replayed knows: the serials
// done up to its watermark and above it, and those evicted unwritten.
func (g *serialGaps) fromSpool(sp *Spool) (held uint64) {
	// Gaps the contidd before held uncounted when it was killed: its
	// successor counts them (the watermark may have passed them), and
	// does not count them again should its replay show them.
	ranges, held := sp.suspects()
	g.known = append(g.known, ranges...)
	done, ok, _ := sp.done()
	if !ok {
		return held
	}
	g.floor, g.hasFloor = done, true
	for _, serial := range sp.doneAboveList() {
		g.known = append(g.known, serialRange{serial, serial})
	}
	if lo, hi, ok := sp.evictedRange(); ok {
		g.known = append(g.known, serialRange{lo, hi})
	}
	return held
}

// keepSuspects records the gaps held uncounted in the spool, for a
// successor should this contidd be killed before it counts them.
func (r *Reader) keepSuspects() {
	sp := r.cfg.Spool
	if sp == nil {
		return
	}
	var n uint64
	ranges := make([]serialRange, 0, len(r.gaps.suspects))
	for _, s := range r.gaps.suspects {
		if s.n > 0 {
			n += s.n
			ranges = append(ranges, s.serialRange)
		}
	}
	sp.keepSuspects(ranges, n)
}

// seen notes the serial of each event the reassembler hands on, before
// anything else is done with it.
func (r *Reader) seen(serial uint32) {
	r.stopSeen(serial)
	g := &r.gaps
	if g.hasFloor && int32(serial-g.floor) <= 0 {
		return
	}
	if !g.hasHigh {
		// Past the floor for good: it must not swallow serials once the
		// counter wraps.
		g.high, g.hasHigh, g.hasFloor = serial, true, false
		return
	}
	d := int32(serial - g.high)
	if d <= 0 {
		if g.cameLate(serial) {
			r.keepSuspects()
		}
		return
	}
	if d > 1 {
		gap := serialRange{g.high + 1, serial - 1}
		n := uint64(d-1) - covered(gap, g.known)
		if r.cfg.Source == Unicast {
			g.suspects = append(g.suspects, suspectGap{serialRange: gap, n: n, at: time.Now()})
			r.keepSuspects()
		} else {
			r.gapped(n)
		}
	}
	g.high = serial
	// Known serials behind the highest are used up.
	kept := g.known[:0]
	for _, k := range g.known {
		if int32(k.hi-serial) > 0 {
			kept = append(kept, k)
		}
	}
	g.known = kept
}

// cameLate: a serial at or below the highest came; if a gap held it, it
// was not missing after all.
func (g *serialGaps) cameLate(serial uint32) bool {
	for i := range g.suspects {
		s := &g.suspects[i]
		if !s.has(serial) || s.found[serial] || s.n == 0 {
			continue
		}
		for _, k := range g.known {
			if k.has(serial) {
				return false // not counted in the gap
			}
		}
		if s.found == nil {
			s.found = make(map[uint32]bool)
		}
		s.found[serial] = true
		s.n--
		return true
	}
	return false
}

// claimSuspects counts the gaps held longer than a reassembly timeout,
// or all of them.
func (r *Reader) claimSuspects(now time.Time, all bool) {
	if st := &r.stop; st.pending && !st.returned && !all {
		// They may lie inside the stop gap, which counts them.
		return
	}
	g := &r.gaps
	kept := g.suspects[:0]
	for _, s := range g.suspects {
		if all || now.Sub(s.at) > r.cfg.ReassemblyTimeout {
			r.gapped(s.n)
			continue
		}
		kept = append(kept, s)
	}
	if len(kept) != len(g.suspects) {
		g.suspects = kept
		r.keepSuspects()
	}
}

// covered is how many serials of gap lie in at least one of known. The
// ranges may overlap (a serial written above the watermark can lie inside
// the evicted range), so each serial is counted once, from their union,
// never once per range: the count must not go past the gap's length.
func covered(gap serialRange, known []serialRange) uint64 {
	// Offsets from gap.lo, so that a range across the counter's wrap
	// sorts as it runs.
	var parts [][2]uint32
	for _, k := range known {
		if overlap(gap, k) == 0 {
			continue
		}
		lo, hi := k.lo, k.hi
		if int32(lo-gap.lo) < 0 {
			lo = gap.lo
		}
		if int32(hi-gap.hi) > 0 {
			hi = gap.hi
		}
		parts = append(parts, [2]uint32{lo - gap.lo, hi - gap.lo})
	}
	slices.SortFunc(parts, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	var n uint64
	var end uint32 // the first offset not yet counted
	for _, p := range parts {
		if p[1] < end {
			continue
		}
		n += uint64(p[1]-max(p[0], end)) + 1
		end = p[1] + 1
	}
	return n
}

// overlap is how many serials two ranges share.
func overlap(a, b serialRange) uint32 {
	lo, hi := a.lo, a.hi
	if int32(b.lo-lo) > 0 {
		lo = b.lo
	}
	if int32(b.hi-hi) < 0 {
		hi = b.hi
	}
	if int32(hi-lo) < 0 {
		return 0
	}
	return hi - lo + 1
}
