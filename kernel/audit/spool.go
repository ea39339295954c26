package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// A Spool keeps the records a unicast reader took from its socket until
// the journal has their events. The kept socket (Config.Inherited) covers
// what no contidd read; the spool covers what a contidd read and had not
// yet written when it was killed: events in reassembly and in the
// forwarder's queue. It is a ring in a memfd that systemd keeps in its
// file descriptor store beside the socket, so it outlives the process
// without touching the disk, and a successor replays what it holds.
//
// Records are received straight into the ring, so no record is ever only
// in the process's own memory: one received and not yet committed is
// still found by its netlink header.
//
// The reader goroutine owns the ring; Done may be called from any
// goroutine.
//
// Which records a successor may skip is kept as a watermark serial and a
// position: every record before the position whose serial is at or below
// the watermark belongs to an event that is written. Events are handed on
// in serial order except for records that come after a later serial was
// handed on (the first records of an event that took its serial early,
// or the rest of one the reassembler gave up on), so the watermark is the
// lowest serial still being assembled or waiting to be written, less
// one, and a record read after the position is replayed whatever its
// serial.
type Spool struct {
	f    *os.File
	mem  []byte
	ring []byte
	size uint64

	// marks are the positions of each event's first record, in the order
	// read, so the tail can move past events once they are done.
	marks []spoolMark
	// slotAt is where the slot handed out by slot() lies. The ring is
	// zero from the head up to zeroedTo: a slot is zeroed only past it,
	// so each byte is zeroed once a lap however short the records.
	slotAt   uint64
	zeroedTo uint64
	// evicted counts events pushed out of a full ring before they were
	// done: a crash then would lose them (see Stats).
	evicted atomic.Uint64

	// mu guards what follows, shared by the reader and Done.
	mu sync.Mutex
	// unsettled counts, per serial, its records in reassembly and its
	// events handed on and not done; low holds the same serials (and
	// some already settled, skipped when they come up) lowest first.
	unsettled map[uint32]int
	low       serialQueue
	// handed are the serials of the events handed on and not done, in
	// the order they were handed on, which is the order Done comes in.
	handed []uint32
	// high is the highest serial read; markedTo is where the record read
	// last ends.
	high     uint32
	hasHigh  bool
	markedTo uint64
	// doneAbove are the serials settled above the watermark.
	doneAbove map[uint32]struct{}
}

type spoolMark struct {
	serial uint32
	pos    uint64
}

// SpoolSize is the ring's default size. What a reader holds unwritten is
// bounded by its reassembly window and the forwarder's queue, about a
// thousand events; at a few KiB each that is well inside it.
const SpoolSize = 16 << 20

// The header occupies the first page; the ring follows.
const (
	spoolHeaderSize = 4096
	spoolMagic      = 0x636f6e7469645350 // "contidSP"
	spoolVersion    = 1

	offMagic   = 0
	offVersion = 8
	offSize    = 16
	offHead    = 24 // bytes ever appended: a record's ring offset is pos % size
	offTail    = 32 // position of the oldest record that may not be done
	offDone    = 40 // a record before offDoneEnd with a serial up to this one is done
	offHasDone = 44
	offEvicted = 48 // the highest serial evicted before it was done since the last replay
	offEvFirst = 52 // the lowest such serial
	offEvCount = 56 // events evicted since the last replay
	offBoot    = 64
	bootLen    = 48
	// offDoneEnd is where the record read last when offDone was set
	// ends; a record from there on is replayed whatever its serial. An
	// earlier contidd left it 0, and its watermark covers every record.
	offDoneEnd = 112
	// offDoneLen and offDoneSet list serials above the watermark whose
	// events are done (handed on before one of a lower serial was):
	// their records before offDoneEnd are not replayed either.
	offDoneLen = 120
	offDoneSet = 128
	doneSetMax = 256
	// offLost is the kernel's lost counter up to which the reader
	// counted its rise, if offHasLost is 1: a successor counts the rise
	// since. An earlier contidd left both 0, and its saved position
	// says instead.
	offLost    = offDoneSet + 4*doneSetMax
	offHasLost = offLost + 4
	// offUnreported holds the losses counted and not yet in a loss
	// entry (see KeepLoss): kernel, reader, stopped, write, and since
	// when, in Unix microseconds. An earlier contidd left them 0.
	offUnreported = offHasLost + 4
	unreportedLen = 5
	// offCredit is the records the stream showed lost that no rise of
	// the counter since offLost has met yet (see kernellost.go).
	offCredit = offUnreported + 8*unreportedLen
	// offSuspects holds the serial gaps the reader holds for a
	// reassembly timeout before it counts them: how many ranges, the
	// serials missing in them, and the ranges (lo, hi), at most
	// suspectsMax of them.
	offSuspects      = offCredit + 8
	offSuspectsN     = offSuspects + 8
	offSuspectRanges = offSuspectsN + 8
	suspectsMax      = 256
)

// slotMax is the most one received record can take: its length, then the
// datagram. A slot is handed out only where that much is left before the
// ring's end, so a record never wraps; a replay applies the same rule to
// find the next record. The length is the one recv(2) gave: the kernel's
// nlmsg_len of audit records is not always the datagram's.
const (
	slotMax  = (lenBytes + unix.NLMSG_HDRLEN + libaudit.AuditMessageMaxLength + 3) &^ 3
	lenBytes = 4
)

// spoolSeals fix a spool's size and its seals.
const spoolSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// ErrSpoolMismatch: a stored spool is not one this contidd can read on
// (another boot, or another layout); a fresh one replaces it.
var ErrSpoolMismatch = errors.New("audit spool from another boot or version")

// NewSpool creates an empty spool of size bytes (SpoolSize if 0) in a
// memfd.
func NewSpool(size int) (*Spool, error) {
	if size <= 0 {
		size = SpoolSize
	}
	if size < 4*slotMax {
		return nil, fmt.Errorf("audit spool of %d bytes: at least %d needed", size, 4*slotMax)
	}
	fd, err := unix.MemfdCreate("contid-audit-spool", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("audit spool memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "audit-spool")
	if err := f.Truncate(int64(spoolHeaderSize + size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit spool size: %w", err)
	}
	// Its size is fixed for good: a shrunk memfd would kill its reader
	// with SIGBUS.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, spoolSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal the audit spool: %w", err)
	}
	s, err := mapSpool(f, spoolHeaderSize+size)
	if err != nil {
		f.Close()
		return nil, err
	}
	le := binary.LittleEndian
	le.PutUint64(s.mem[offSize:], uint64(size))
	le.PutUint32(s.mem[offVersion:], spoolVersion)
	copy(s.mem[offBoot:offBoot+bootLen], BootID())
	le.PutUint64(s.mem[offMagic:], spoolMagic)
	s.size = uint64(size)
	s.ring = s.mem[spoolHeaderSize:]
	return s, nil
}

// OpenSpool maps a spool an earlier contidd left in systemd's store. It
// works on a duplicate; the caller keeps f.
func OpenSpool(f *os.File) (*Spool, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup the audit spool: %w", err)
	}
	own := os.NewFile(uintptr(fd), "audit-spool")
	if seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil || seals&spoolSeals != spoolSeals {
		own.Close()
		return nil, fmt.Errorf("%w: not sealed", ErrSpoolMismatch)
	}
	st, err := own.Stat()
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	if st.Size() < spoolHeaderSize+4*slotMax {
		own.Close()
		return nil, fmt.Errorf("%w: %d bytes", ErrSpoolMismatch, st.Size())
	}
	s, err := mapSpool(own, int(st.Size()))
	if err != nil {
		own.Close()
		return nil, err
	}
	le := binary.LittleEndian
	boot := string(s.mem[offBoot : offBoot+bootLen])
	if i := strings.IndexByte(boot, 0); i >= 0 {
		boot = boot[:i]
	}
	size := le.Uint64(s.mem[offSize:])
	if le.Uint64(s.mem[offMagic:]) != spoolMagic || le.Uint32(s.mem[offVersion:]) != spoolVersion ||
		size != uint64(st.Size())-spoolHeaderSize || boot == "" || boot != BootID() ||
		s.tail() > s.head() || s.head()-s.tail() > size {
		s.Close()
		return nil, ErrSpoolMismatch
	}
	s.size = size
	s.ring = s.mem[spoolHeaderSize:]
	// Until this contidd reads a higher serial, the watermark stays.
	s.high, s.hasHigh, _ = s.done()
	return s, nil
}

func mapSpool(f *os.File, n int) (*Spool, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the audit spool: %w", err)
	}
	return &Spool{f: f, mem: mem}, nil
}

// File is the memfd, for systemd's store. It stays owned by the spool.
func (s *Spool) File() *os.File { return s.f }

// Close unmaps the spool and closes its memfd; a copy in systemd's store
// keeps the contents.
func (s *Spool) Close() error {
	err := unix.Munmap(s.mem)
	return errors.Join(err, s.f.Close())
}

// Done says that the event of serial the reader handed on is in the
// journal or known not to go there. Events are done in the order the
// reader handed them on.
func (s *Spool) Done(serial uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handed) > 0 && s.handed[0] == serial {
		s.handed = s.handed[1:]
	} else if i := slices.Index(s.handed, serial); i >= 0 {
		s.handed = slices.Delete(s.handed, i, i+1)
	} else {
		return
	}
	s.settle(serial, 1)
	s.setWatermark()
}

// mark notes that the record committed at pos, n bytes long, belongs to
// serial; assembled says the reassembler keeps it in an event (it drops
// an EOE). The first record of each run of one serial marks where the
// tail may stop.
func (s *Spool) mark(serial uint32, pos uint64, n int, assembled bool) {
	if k := len(s.marks); k == 0 || s.marks[k-1].serial != serial {
		s.marks = append(s.marks, spoolMark{serial, pos})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasHigh || int32(serial-s.high) > 0 {
		s.high, s.hasHigh = serial, true
	}
	if assembled {
		s.unsettle(serial)
	}
	s.markedTo = pos + uint64((lenBytes+n+3)&^3)
	s.setWatermark()
}

// handOn notes that the reassembler gave up records of serial as one
// event; handed says the handler got it, and will report it Done.
func (s *Spool) handOn(serial uint32, records int, handed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if handed {
		s.unsettle(serial)
		s.handed = append(s.handed, serial)
	}
	s.settle(serial, records)
	s.setWatermark()
}

func (s *Spool) unsettle(serial uint32) {
	if s.unsettled == nil {
		s.unsettled = make(map[uint32]int)
	}
	if s.unsettled[serial] == 0 {
		s.low.add(serial)
	}
	s.unsettled[serial]++
	delete(s.doneAbove, serial)
}

func (s *Spool) settle(serial uint32, n int) {
	if s.unsettled[serial] <= n {
		delete(s.unsettled, serial)
		// Only a lower serial still unsettled keeps the watermark below
		// this one.
		if s.lowest(); len(s.low) > 0 && int32(s.low[0]-serial) < 0 {
			if s.doneAbove == nil {
				s.doneAbove = make(map[uint32]struct{})
			}
			s.doneAbove[serial] = struct{}{}
		}
		return
	}
	s.unsettled[serial] -= n
}

// setWatermark stores the watermark for the records read so far: the
// serial before the lowest unsettled one, or the highest read. It is
// stored before the position, so that a successor finding the new
// serial with the old position applies it to fewer records than it
// covers.
func (s *Spool) setWatermark() {
	s.lowest()
	w := s.high
	if len(s.low) > 0 {
		w = s.low[0] - 1
	}
	if !s.hasHigh && len(s.low) == 0 {
		return
	}
	n := 0
	for serial := range s.doneAbove {
		switch {
		case int32(serial-w) <= 0:
			delete(s.doneAbove, serial)
		case n < doneSetMax:
			// More would only be replayed again.
			atomic.StoreUint32(s.word(offDoneSet+4*n), serial)
			n++
		}
	}
	atomic.StoreUint32(s.word(offDone), w)
	atomic.StoreUint32(s.word(offHasDone), 1)
	atomic.StoreUint32(s.word(offDoneLen), uint32(n))
	atomic.StoreUint64(s.dword(offDoneEnd), s.markedTo)
}

// doneAboveList is the stored list of serials done above the watermark.
func (s *Spool) doneAboveList() []uint32 {
	n := min(int(atomic.LoadUint32(s.word(offDoneLen))), doneSetMax)
	out := make([]uint32, n)
	for i := range out {
		out[i] = atomic.LoadUint32(s.word(offDoneSet + 4*i))
	}
	return out
}

// evictedRange is the lowest and highest serial evicted unwritten since
// the last replay, if any.
func (s *Spool) evictedRange() (lo, hi uint32, ok bool) {
	if atomic.LoadUint32(s.word(offEvCount)) == 0 {
		return 0, 0, false
	}
	return atomic.LoadUint32(s.word(offEvFirst)), atomic.LoadUint32(s.word(offEvicted)), true
}

// doneAboveWatermark: the stored list names serial.
func (s *Spool) doneAboveWatermark(serial uint32) bool {
	n := min(int(atomic.LoadUint32(s.word(offDoneLen))), doneSetMax)
	for i := 0; i < n; i++ {
		if atomic.LoadUint32(s.word(offDoneSet+4*i)) == serial {
			return true
		}
	}
	return false
}

// lowest drops the settled serials from the front of low, so that
// low[0] is the lowest unsettled one.
func (s *Spool) lowest() {
	for len(s.low) > 0 && s.unsettled[s.low[0]] == 0 {
		s.low = s.low[1:]
	}
}

// serialQueue holds serials lowest first, across the wrap of the 32-bit
// counter: the serials in flight at once span far less than half of it.
// Serials come mostly in order, so adding one is mostly an append.
type serialQueue []uint32

func (q *serialQueue) add(serial uint32) {
	i := len(*q)
	for i > 0 && int32((*q)[i-1]-serial) > 0 {
		i--
	}
	*q = slices.Insert(*q, i, serial)
}

// done returns the watermark, if any, and the position it covers
// records up to (0: all of them).
func (s *Spool) done() (uint32, bool, uint64) {
	return atomic.LoadUint32(s.word(offDone)), atomic.LoadUint32(s.word(offHasDone)) == 1, atomic.LoadUint64(s.dword(offDoneEnd))
}

// setKernelLost records the kernel's lost counter up to which its rise
// is counted.
func (s *Spool) setKernelLost(v uint32) {
	atomic.StoreUint32(s.word(offLost), v)
	atomic.StoreUint32(s.word(offHasLost), 1)
}

// setCredit records the reader's unmet stream losses.
func (s *Spool) setCredit(n uint64) { atomic.StoreUint64(s.dword(offCredit), n) }

// keepSuspects records the gaps not yet counted, merging neighbours
// once there are more than fit (a merged range also covers serials that
// came, which is harmless: it only keeps a successor from counting
// them as a gap again).
func (s *Spool) keepSuspects(ranges []serialRange, n uint64) {
	for len(ranges) > suspectsMax {
		merged := make([]serialRange, 0, (len(ranges)+1)/2)
		for i := 0; i < len(ranges); i += 2 {
			r := ranges[i]
			if i+1 < len(ranges) {
				r.hi = ranges[i+1].hi
			}
			merged = append(merged, r)
		}
		ranges = merged
	}
	atomic.StoreUint32(s.word(offSuspects), 0)
	for i, r := range ranges {
		atomic.StoreUint32(s.word(offSuspectRanges+8*i), r.lo)
		atomic.StoreUint32(s.word(offSuspectRanges+8*i+4), r.hi)
	}
	atomic.StoreUint64(s.dword(offSuspectsN), n)
	atomic.StoreUint32(s.word(offSuspects), uint32(len(ranges)))
}

// suspects returns what keepSuspects recorded.
func (s *Spool) suspects() ([]serialRange, uint64) {
	k := int(atomic.LoadUint32(s.word(offSuspects)))
	if k > suspectsMax {
		return nil, 0
	}
	ranges := make([]serialRange, k)
	for i := range ranges {
		ranges[i] = serialRange{atomic.LoadUint32(s.word(offSuspectRanges + 8*i)), atomic.LoadUint32(s.word(offSuspectRanges + 8*i + 4))}
	}
	return ranges, atomic.LoadUint64(s.dword(offSuspectsN))
}

// credit returns what setCredit recorded.
func (s *Spool) credit() uint64 { return atomic.LoadUint64(s.dword(offCredit)) }

// kernelLost returns what setKernelLost recorded, if anything.
func (s *Spool) kernelLost() (uint32, bool) {
	return atomic.LoadUint32(s.word(offLost)), atomic.LoadUint32(s.word(offHasLost)) == 1
}

// LossCounts are losses counted and not yet reported in a loss entry, by
// kind, and since when.
type LossCounts struct {
	Kernel, Reader, Stopped, Write uint64
	Since                          time.Time
}

// KeepLoss records the losses counted and not yet in a loss entry, so a
// successor of a killed contidd reports them: the journal forwarder
// batches losses for its loss interval, and a count held only in its
// memory died with it. Called by one goroutine at a time; a kill in the
// middle of it can leave the last change half made.
func (s *Spool) KeepLoss(c LossCounts) {
	var since uint64
	if c.Kernel+c.Reader+c.Stopped+c.Write > 0 {
		since = uint64(c.Since.UnixMicro())
	}
	for i, v := range [unreportedLen]uint64{c.Kernel, c.Reader, c.Stopped, c.Write, since} {
		atomic.StoreUint64(s.dword(offUnreported+8*i), v)
	}
}

// KeptLoss returns what KeepLoss last recorded.
func (s *Spool) KeptLoss() LossCounts {
	var v [unreportedLen]uint64
	for i := range v {
		v[i] = atomic.LoadUint64(s.dword(offUnreported + 8*i))
	}
	c := LossCounts{Kernel: v[0], Reader: v[1], Stopped: v[2], Write: v[3]}
	if v[4] != 0 {
		c.Since = time.UnixMicro(int64(v[4]))
	}
	return c
}

func (s *Spool) word(off int) *uint32  { return (*uint32)(unsafe.Pointer(&s.mem[off])) }
func (s *Spool) dword(off int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[off])) }

func (s *Spool) head() uint64         { return atomic.LoadUint64(s.dword(offHead)) }
func (s *Spool) tail() uint64         { return atomic.LoadUint64(s.dword(offTail)) }
func (s *Spool) setHead(pos uint64)   { atomic.StoreUint64(s.dword(offHead), pos) }
func (s *Spool) setTail(pos uint64)   { atomic.StoreUint64(s.dword(offTail), pos) }
func (s *Spool) at(pos uint64) []byte { o := pos % s.size; return s.ring[o : o+slotMax] }

// place returns where a record that would start at pos starts: at the
// next lap when too little is left before the ring's end.
func (s *Spool) place(pos uint64) uint64 {
	if s.size-pos%s.size < slotMax {
		return pos + (s.size - pos%s.size)
	}
	return pos
}

// slot returns the memory the next record is received into. It is zero,
// so a replay can tell a record received there before its commit, and
// how long it is.
func (s *Spool) slot() []byte {
	s.forgetDone()
	pos := s.place(s.head())
	for !s.free(pos) {
		s.evictOldest(pos)
	}
	s.slotAt = pos
	b := s.at(pos)
	from := 0
	if s.zeroedTo > pos && s.zeroedTo < pos+slotMax {
		from = int(s.zeroedTo - pos)
	}
	if s.zeroedTo < pos+slotMax {
		clear(b[from:])
		s.zeroedTo = pos + slotMax
	}
	return b[lenBytes:]
}

// commit makes the n bytes received into the slot part of the spool. The
// next slot's headers are zeroed now if they are not yet: until the next
// receive, a replay looks there for a record received and not committed,
// and must not take an old lap's bytes for one.
func (s *Spool) commit(n int) {
	binary.NativeEndian.PutUint32(s.at(s.slotAt), uint32(n))
	head := s.slotAt + uint64((lenBytes+n+3)&^3)
	s.setHead(head)
	const headers = lenBytes + unix.NLMSG_HDRLEN
	if next := s.place(head); s.free(next) && s.zeroedTo < next+headers {
		clear(s.at(next)[:headers])
	}
}

// free: a slot at pos overwrites nothing that may not be done.
func (s *Spool) free(pos uint64) bool { return pos+slotMax-s.tail() <= s.size }

// discard forgets what came into the slot: a datagram that was not a
// record must not be replayed as one.
func (s *Spool) discard() { clear(s.at(s.slotAt)) }

// append copies b into the spool, for records read before Run.
func (s *Spool) append(b []byte) uint64 {
	slot := s.slot()
	n := copy(slot, b)
	s.commit(n)
	return s.slotAt
}

// record returns the record at pos: committed, or (uncommitted) received
// into the slot after the last commit, whose length is up to its last
// byte that is not zero (a record's own trailing NULs do not matter).
func (s *Spool) record(pos uint64, committed bool) ([]byte, bool) {
	b := s.at(pos)
	n := int(binary.NativeEndian.Uint32(b))
	if committed {
		if n < unix.NLMSG_HDRLEN || n > slotMax-lenBytes {
			return nil, false
		}
		return b[lenBytes : lenBytes+n], true
	}
	d := b[lenBytes:]
	if n != 0 || !s.free(pos) || binary.NativeEndian.Uint32(d) == 0 {
		return nil, false
	}
	for n = len(d); n > 0 && d[n-1] == 0; n-- {
	}
	if n < unix.NLMSG_HDRLEN {
		return nil, false
	}
	return d[:n], true
}

// forgetDone moves the tail past the events that are done.
func (s *Spool) forgetDone() {
	done, ok, _ := s.done()
	if !ok {
		return
	}
	i := 0
	for i < len(s.marks) && int32(s.marks[i].serial-done) <= 0 {
		i++
	}
	if i == 0 {
		return
	}
	s.marks = s.marks[i:]
	s.moveTail()
}

// replayed: what a replay handed on is marked again, and the records it
// skipped are done, so the position covers them all.
func (s *Spool) replayed() {
	s.mu.Lock()
	if head := s.head(); head > s.markedTo {
		s.markedTo = head
		s.setWatermark()
	}
	s.mu.Unlock()
	s.moveTail()
}

// moveTail sets the tail to the oldest mark, or to the head when every
// event is done.
func (s *Spool) moveTail() {
	if len(s.marks) > 0 {
		s.setTail(s.marks[0].pos)
		return
	}
	s.setTail(s.head())
}

// evictOldest makes room when the ring is full of events not yet done:
// their records go, and if contidd died before writing them they would
// be lost; the lowest and highest such serials are kept so a replay
// counts them. (Records are read mostly, not strictly, in serial order.)
func (s *Spool) evictOldest(pos uint64) {
	if len(s.marks) == 0 {
		s.setTail(pos)
		return
	}
	m := s.marks[0]
	s.marks = s.marks[1:]
	if done, ok, _ := s.done(); !ok || int32(m.serial-done) > 0 {
		s.evicted.Add(1)
		first, last := s.word(offEvFirst), s.word(offEvicted)
		if atomic.LoadUint32(s.word(offEvCount)) == 0 {
			atomic.StoreUint32(first, m.serial)
			atomic.StoreUint32(last, m.serial)
		}
		if int32(m.serial-atomic.LoadUint32(first)) < 0 {
			atomic.StoreUint32(first, m.serial)
		}
		if int32(m.serial-atomic.LoadUint32(last)) > 0 {
			atomic.StoreUint32(last, m.serial)
		}
		atomic.AddUint32(s.word(offEvCount), 1)
	}
	s.moveTail()
}

// evictedUnwritten is how many events left the ring before they were
// done and are not done yet. An event not done keeps the watermark below
// its serial, so the evicted events still unwritten are those past the
// watermark: all of them, none, or, when the watermark lies among them,
// those above it (counted by serial, so other events' serials in between
// count too, never fewer).
func (s *Spool) evictedUnwritten() uint64 {
	n := uint64(atomic.LoadUint32(s.word(offEvCount)))
	if n == 0 {
		return 0
	}
	first, last := atomic.LoadUint32(s.word(offEvFirst)), atomic.LoadUint32(s.word(offEvicted))
	done, hasDone, _ := s.done()
	lo := first
	switch {
	case !hasDone || int32(first-done) > 0:
	case int32(last-done) <= 0:
		return 0
	default:
		n, lo = min(n, uint64(last-done)), done+1
	}
	// An event written above the watermark, before or after its records
	// left the ring (they were still in the pipeline), is not lost.
	for _, serial := range s.doneAboveList() {
		if n > 0 && int32(serial-lo) >= 0 && int32(last-serial) >= 0 {
			n--
		}
	}
	return n
}

// forgetEvicted: a replay has counted the evicted events.
func (s *Spool) forgetEvicted() { atomic.StoreUint32(s.word(offEvCount), 0) }

// Unwritten is how many records the spool holds of events not yet done:
// what a reader given it replays first.
func (s *Spool) Unwritten() int {
	recs, _ := s.pending()
	return len(recs)
}

// spooled is one record a replay hands back.
type spooled struct {
	b   []byte
	pos uint64
}

// pending returns the records from the tail on whose events are not done,
// in the order they were read, including one received and not committed
// (the process died between the two). It also says how many events were
// evicted unwritten after the last done one.
func (s *Spool) pending() ([]spooled, uint64) {
	done, hasDone, doneEnd := s.done()
	var out []spooled
	head := s.head()
	for pos := s.place(s.tail()); ; {
		committed := pos < head
		rec, ok := s.record(pos, committed)
		if !ok {
			// The end, or (committed) a damaged ring: nothing after it
			// can be found.
			break
		}
		next := pos + uint64((lenBytes+len(rec)+3)&^3)
		if !committed {
			binary.NativeEndian.PutUint32(s.at(pos), uint32(len(rec)))
			s.setHead(next)
			head = next
		}
		keep := true
		if _, serial, _, err := parseHeader(trimPayload(rec[unix.NLMSG_HDRLEN:])); err == nil && hasDone &&
			(doneEnd == 0 || pos < doneEnd) && (int32(serial-done) <= 0 || s.doneAboveWatermark(serial)) {
			keep = false
		}
		if keep {
			out = append(out, spooled{rec, pos})
		}
		if !committed {
			break // only the one slot was handed out
		}
		pos = s.place(next)
	}
	return out, s.evictedUnwritten()
}

// trimPayload drops the NULs and newlines user records often end with.
func trimPayload(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == 0 || p[len(p)-1] == '\n') {
		p = p[:len(p)-1]
	}
	return p
}
