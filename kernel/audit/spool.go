package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
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
	offDone    = 40 // the highest serial whose event, and every one before, is done
	offHasDone = 44
	offEvicted = 48 // the highest serial evicted before it was done
	offEvFirst = 52 // the lowest serial evicted since the last replay
	offEvCount = 56 // events evicted since the last replay
	offBoot    = 64
	bootLen    = 48
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

// Done says that the event of serial, and every event before it, is in
// the journal or known not to go there. The forwarder finishes events in
// serial order, so this only moves forward.
func (s *Spool) Done(serial uint32) {
	done, has := s.word(offDone), s.word(offHasDone)
	if atomic.LoadUint32(has) == 1 && int32(serial-atomic.LoadUint32(done)) <= 0 {
		return
	}
	atomic.StoreUint32(done, serial)
	atomic.StoreUint32(has, 1)
}

// done returns the watermark Done set, if any.
func (s *Spool) done() (uint32, bool) {
	return atomic.LoadUint32(s.word(offDone)), atomic.LoadUint32(s.word(offHasDone)) == 1
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

// mark notes that the record committed at pos belongs to serial. The
// first record of each new serial marks where the tail may stop.
func (s *Spool) mark(serial uint32, pos uint64) {
	if n := len(s.marks); n > 0 && int32(serial-s.marks[n-1].serial) <= 0 {
		return
	}
	s.marks = append(s.marks, spoolMark{serial, pos})
}

// forgetDone moves the tail past the events that are done.
func (s *Spool) forgetDone() {
	done, ok := s.done()
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
// be lost; the highest such serial is kept so a replay counts them.
func (s *Spool) evictOldest(pos uint64) {
	if len(s.marks) == 0 {
		s.setTail(pos)
		return
	}
	m := s.marks[0]
	s.marks = s.marks[1:]
	s.evicted.Add(1)
	if atomic.LoadUint32(s.word(offEvCount)) == 0 {
		atomic.StoreUint32(s.word(offEvFirst), m.serial)
	}
	atomic.StoreUint32(s.word(offEvicted), m.serial)
	atomic.AddUint32(s.word(offEvCount), 1)
	s.moveTail()
}

// evictedUnwritten is how many events left the ring before they were
// done and are not done yet. Evictions take the oldest events first and
// the forwarder finishes them in order, so the evicted events still
// unwritten are those past the watermark: all of them, none, or, when
// the watermark lies among them, those above it (counted by serial, so
// other events' serials in between count too, never fewer).
func (s *Spool) evictedUnwritten() uint64 {
	n := uint64(atomic.LoadUint32(s.word(offEvCount)))
	if n == 0 {
		return 0
	}
	first, last := atomic.LoadUint32(s.word(offEvFirst)), atomic.LoadUint32(s.word(offEvicted))
	done, hasDone := s.done()
	switch {
	case !hasDone || int32(first-done) > 0:
		return n
	case int32(last-done) <= 0:
		return 0
	default:
		return min(n, uint64(last-done))
	}
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
	done, hasDone := s.done()
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
		if _, serial, _, err := parseHeader(trimPayload(rec[unix.NLMSG_HDRLEN:])); err == nil && hasDone && int32(serial-done) <= 0 {
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
