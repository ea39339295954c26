package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/contid/contid"
)

// Layout of the state directory. Both files are JSON lines, so a damaged
// line costs one record, never the rest. The journal gets one line per
// change; the snapshot is rewritten (temp file + rename) only when the
// journal is compacted, at Open and when it outgrows twice the live data.
//
// The journal is preallocated with zeros and written in place, so a sync
// is an fdatasync of a few data blocks with no size or extent update.
// Trailing zeros are padding, not records.
//
// What is durable when. A change is written to the journal before the call
// that made it returns, so a crash of contidd loses nothing (the page cache
// keeps it), but it is not synced then: a background flusher fdatasyncs
// the journal at most every flushInterval, and Close syncs. A power loss
// can therefore lose the last second or so of records: a container's name,
// unit, owner, pod cgroups, exit. Those containers died with the host.
//
// It never loses an ID's uniqueness. Before an ID above the lease is given
// out (allocated, claimed or adopted), a lease line ("IDs up to L may have
// been handed out", L a leaseBlock ahead) is written and synced; that is
// the only sync on the tagging path, once per leaseBlock IDs. Close writes
// a close line after its sync: from then on the records alone account for
// every ID, and the lease lapses. At Open, a lease with no close line
// after it means the last run ended in a crash or power loss. Every ID up
// to the lease is then treated as used: allocation resumes above it, so
// IDs skip ahead by up to leaseBlock, and an explicit request for an
// unrecorded ID at or below it is refused (Registry.sealed), since its
// record may be the one that was lost.
const (
	snapshotFile = "registry.snapshot"
	journalFile  = "registry.journal"
	corruptFile  = "registry.corrupt" // damaged lines, kept for a human
	lockFile     = "registry.lock"

	// formatVersion 2 added the lease, close and sealed fields; version 1
	// state (every line synced, no lease) reads as a clean shutdown.
	formatVersion = 2
)

// journalChunk is how much zeroed space the journal grows by at a time.
const journalChunk = 1 << 20

// leaseBlock is how many IDs one synced lease line covers: the tagging
// path pays one fdatasync per leaseBlock new IDs, and a crash makes the
// next IDs skip ahead by at most this much.
const leaseBlock = 1024

// minCompactBytes keeps a small registry from compacting on every change.
// A variable so tests can compact without writing megabytes.
var minCompactBytes int64 = 1 << 20

// flushInterval bounds how long a written change may stay unsynced, and so
// how much a power loss can take. Also how often the flusher syncs at most,
// so a burst of changes costs one fdatasync. A variable for tests.
var flushInterval = time.Second

type diskLine struct {
	Op      string    `json:"op"` // snapshot | put | retire | lease | close | prune
	Version int       `json:"version,omitempty"`
	HWM     contid.ID `json:"hwm,omitempty"`
	// Lease (snapshot and lease lines): IDs up to it may have been handed
	// out without a durable record. Sealed (snapshot): IDs up to it that
	// have no record are never handed out, see Registry.sealed.
	Lease  contid.ID   `json:"lease,omitempty"`
	Sealed contid.ID   `json:"sealed,omitempty"`
	ID     contid.ID   `json:"id,omitempty"`
	Rec    *diskRecord `json:"rec,omitempty"`
}

type diskRecord struct {
	ID        contid.ID    `json:"id"`
	Chain     []contid.ID  `json:"chain"`
	Flags     contid.Flags `json:"flags,omitempty"`
	Name      string       `json:"name,omitempty"`
	Unit      string       `json:"unit,omitempty"`
	Manager   string       `json:"manager,omitempty"`
	Image     string       `json:"image,omitempty"`
	ManagerID string       `json:"manager_id,omitempty"`
	// UUID came after formatVersion 2 without a new version: an older
	// contidd ignores the field, and records it wrote without one get
	// one at load (fromDisk).
	UUID       string       `json:"uuid,omitempty"`
	Cgroups    []diskCgroup `json:"cgroups,omitempty"`
	Procs      []diskProc   `json:"procs,omitempty"`
	State      State        `json:"state"`
	Created    int64        `json:"created"`
	Exited     int64        `json:"exited,omitempty"`
	OwnerUID   uint32       `json:"owner_uid,omitempty"`
	OwnerPID   uint32       `json:"owner_pid,omitempty"`
	OwnerStart uint64       `json:"owner_start,omitempty"`
	// HeldProcesses came after formatVersion 2 without a new version,
	// as UUID did: a record without it reads as false, which costs only
	// the read of the cgroup it saves.
	HeldProcesses bool `json:"held_processes,omitempty"`
}

type diskCgroup struct {
	Path string `json:"path,omitempty"`
	ID   uint64 `json:"id,omitempty"`
}

type diskProc struct {
	PID   uint32 `json:"pid"`
	Start uint64 `json:"start,omitempty"`
}

type store struct {
	dir     string
	lock    *os.File
	journal *os.File
	// journalBytes is where the journal's records end (the file is
	// journalCap bytes, zero padded); liveBytes what a snapshot of the
	// current records would take. Their ratio triggers compaction. Only
	// changes (under Registry.change) touch them.
	journalBytes int64
	journalCap   int64
	liveBytes    int64
	// lease is the durable lease of this run: every ID handed out since
	// Open that has no synced record is at most lease. Zero after Open,
	// which syncs every record it loaded.
	lease contid.ID

	// mu guards the bookkeeping the flusher shares with changes: how far
	// the journal is written and synced, in which incarnation (compaction
	// truncates it). The writes and syncs themselves run outside it, so a
	// change never waits for the flusher's fdatasync.
	mu      sync.Mutex
	gen     uint64
	written int64
	synced  int64

	// failed: a write or sync of the journal failed in this run, so the
	// records may not account for every ID and Close must not say they do.
	failed atomic.Bool
	syncs  atomic.Uint64 // fdatasyncs of the journal, for benchmarks

	logf     func(format string, args ...any)
	interval time.Duration // flushInterval when opened
	kick     chan struct{} // buffered 1: the journal has unsynced writes
	stop     chan struct{}
	flushed  chan struct{} // closed when the flusher has returned
}

// openStore locks dir, loads its records into r, compacts and starts the
// flusher.
func openStore(dir string, r *Registry) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory %s is in use by another registry", dir)
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	s := &store{dir: dir, lock: lock, logf: r.logf}
	if err := s.load(r); err != nil {
		s.close()
		return nil, err
	}
	if err := s.compact(r); err != nil {
		s.close()
		return nil, err
	}
	s.interval = flushInterval
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.flushed = make(chan struct{})
	go s.flushLoop()
	return s, nil
}

// close stops the flusher, syncs and, when every write of the run made it,
// marks the shutdown clean so the next Open lets the lease lapse.
func (s *store) close() error {
	var errs []error
	if s.stop != nil {
		close(s.stop)
		<-s.flushed
		s.stop = nil
		errs = append(errs, s.markClean())
	}
	if s.journal != nil {
		errs = append(errs, s.journal.Close())
		s.journal = nil
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
		s.lock = nil
	}
	return errors.Join(errs...)
}

// markClean syncs every record, then writes and syncs the close line. Two
// syncs, so the close line cannot reach the disk without the records
// before it.
func (s *store) markClean() error {
	if err := s.sync(); err != nil {
		return err
	}
	if s.failed.Load() {
		// Some record may be missing: the next Open must treat the
		// lease as used, as after a crash.
		s.logf("a journal write or sync failed earlier: the shutdown is not marked clean, IDs up to %d stay reserved", s.lease)
		return nil
	}
	if _, err := s.append(diskLine{Op: "close"}); err != nil {
		return err
	}
	return s.sync()
}

// flushLoop syncs the journal flushInterval after it was first written to
// since the last sync, so a burst of changes shares one fdatasync and none
// waits for it.
func (s *store) flushLoop() {
	defer close(s.flushed)
	failing := false
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		t := time.NewTimer(s.interval)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		err := s.sync()
		switch {
		case err != nil && !failing:
			s.logf("background sync of the journal failed, records of the last changes may not survive a power loss: %v", err)
		case err == nil && failing:
			s.logf("background sync of the journal works again")
		}
		failing = err != nil
		if failing {
			s.dirty() // retry after another interval
		}
	}
}

// dirty tells the flusher there is something to sync.
func (s *store) dirty() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sync fdatasyncs the journal if anything was written since the last sync.
// Safe to call concurrently with changes and with itself: SyscallConn
// holds the file open for the duration, so a concurrent Close cannot hand
// the descriptor number to another file under us.
func (s *store) sync() error {
	s.mu.Lock()
	gen, end, synced := s.gen, s.written, s.synced
	s.mu.Unlock()
	if end == synced {
		return nil
	}
	rc, err := s.journal.SyscallConn()
	if err != nil {
		return fmt.Errorf("sync %s: %w", journalFile, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fdatasync(int(fd)) }); err != nil {
		serr = err
	}
	s.syncs.Add(1)
	if serr != nil {
		// After a failed fdatasync the kernel may have dropped the
		// dirty pages; a later success proves nothing about them.
		s.failed.Store(true)
		return fmt.Errorf("sync %s: %w", journalFile, serr)
	}
	s.mu.Lock()
	if s.gen == gen && end > s.synced {
		s.synced = end
	}
	s.mu.Unlock()
	return nil
}

// syncedBytes is how much of the journal is known to be on disk.
func (s *store) syncedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// extendLease durably records that IDs up to to may be handed out, before
// one above the current lease is. The fdatasync also makes every record
// written before it durable.
func (s *store) extendLease(to contid.ID) error {
	if s.journal == nil {
		return ErrClosed
	}
	if to <= s.lease {
		return nil
	}
	if _, err := s.append(diskLine{Op: "lease", Lease: to}); err != nil {
		return err
	}
	if err := s.sync(); err != nil {
		return err
	}
	s.lease = to
	return nil
}

// loadState is what replaying the files found beyond the records.
type loadState struct {
	// lease: the lease in force at the end of the files, zero if the last
	// run closed cleanly (or predates leases).
	lease contid.ID
}

// load replays the snapshot, then the journal, keeping the last record of
// each ID. A lease left in force (no close line after it) means records
// may be missing: every ID up to it is raised into the high-water mark and
// sealed.
func (s *store) load(r *Registry) error {
	entries := make(map[contid.ID]*entry)
	var ls loadState
	for _, name := range []string{snapshotFile, journalFile} {
		if err := s.replay(name, r, entries, &ls); err != nil {
			return err
		}
	}
	ids := make([]contid.ID, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := entries[id]
		if held := r.uuids[e.c.UUID]; held != nil && e.c.State == StateActive {
			// Two active containers with one UUID (damaged state
			// files): the later one gets a fresh UUID, kept by the
			// compaction below. Left shared, the first one's exit
			// would free the UUID while the second still holds it,
			// and a third container could take it too.
			fresh := NewUUID()
			r.warn("containers %d and %d both held UUID %s: container %d now has UUID %s", held.c.ID, id, e.c.UUID, id, fresh)
			e.c.UUID = fresh
		}
		r.byID[id] = e
		r.index(e)
		for _, x := range e.c.Chain {
			r.raise(x)
		}
	}
	for id := range r.retired {
		r.raise(id)
	}
	if ls.lease > 0 {
		r.warn("the last run ended without closing the registry (crash or power loss): IDs up to %d are treated as used, and later ones skip ahead past %d", ls.lease, r.hwm)
		r.raise(ls.lease)
		r.sealed = max(r.sealed, ls.lease)
	}
	return nil
}

func (s *store) replay(name string, r *Registry, entries map[contid.ID]*entry, ls *loadState) error {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	// Zero padding after the last record (and after a torn one).
	data = bytes.TrimRight(data, "\x00")
	lines := bytes.Split(data, []byte{'\n'})
	for i, raw := range lines {
		// Writeback may reach the disk out of order, so a power loss can
		// leave zeros where unsynced lines were and whole lines after
		// them: a line may start with zeros.
		raw = bytes.TrimLeft(raw, "\x00")
		if len(raw) == 0 {
			continue
		}
		if i == len(lines)-1 {
			// No newline after it: the write was cut short by a crash.
			r.warn("%s: ignored a torn last line (%d bytes) left by an interrupted write", name, len(raw))
			s.keepCorrupt(name, raw)
			continue
		}
		if err := s.apply(raw, r, entries, ls); err != nil {
			r.warn("%s:%d: skipped a damaged line: %v", name, i+1, err)
			s.keepCorrupt(name, raw)
		}
	}
	return nil
}

func (s *store) apply(raw []byte, r *Registry, entries map[contid.ID]*entry, ls *loadState) error {
	var l diskLine
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	switch l.Op {
	case "snapshot":
		if l.Version < 1 || l.Version > formatVersion {
			return fmt.Errorf("snapshot format %d, this contidd reads 1 to %d", l.Version, formatVersion)
		}
		r.raise(l.HWM)
		r.sealed = max(r.sealed, l.Sealed)
		ls.lease = max(ls.lease, l.Lease)
	case "lease":
		if l.Lease == contid.Unset || l.Lease == contid.Invalid {
			return fmt.Errorf("lease of invalid ID %d", uint64(l.Lease))
		}
		ls.lease = max(ls.lease, l.Lease)
	case "close":
		ls.lease = 0
	case "retire":
		if l.ID == contid.Unset || l.ID == contid.Invalid {
			return fmt.Errorf("retire of invalid ID %d", uint64(l.ID))
		}
		r.retired[l.ID] = true
	case "prune":
		if l.ID == contid.Unset || l.ID == contid.Invalid {
			return fmt.Errorf("prune of invalid ID %d", uint64(l.ID))
		}
		delete(entries, l.ID)
		r.raise(l.ID)
		r.sealed = max(r.sealed, l.ID)
	case "put":
		if l.Rec == nil {
			return errors.New("put without a record")
		}
		e, err := fromDisk(l.Rec)
		if err != nil {
			// The record is skipped, its ID is not: it was handed out
			// (by a contidd that recorded a path this one refuses), so
			// it is sealed as a pruned one is.
			if id := l.Rec.ID; id != contid.Unset && id != contid.Invalid {
				r.raise(id)
				r.sealed = max(r.sealed, id)
			}
			return err
		}
		if prev := entries[e.c.ID]; prev != nil && l.Rec.UUID == "" {
			// An older contidd rewrote a record that already had a
			// UUID (it drops the field it does not know): the
			// container keeps the one it had.
			e.c.UUID = prev.c.UUID
		}
		if prev := entries[e.c.ID]; prev != nil && prev.c.HeldProcesses && prev.c.UUID == e.c.UUID {
			// Never taken back once set; a record of the same instance
			// without it was rewritten by an older contidd, which drops
			// the field. An ID given again is a new instance, with a
			// UUID of its own, that has held nothing yet.
			e.c.HeldProcesses = true
		}
		entries[e.c.ID] = e
	default:
		return fmt.Errorf("unknown op %q", l.Op)
	}
	return nil
}

// keepCorrupt saves a damaged line for a human before compaction drops it.
func (s *store) keepCorrupt(from string, raw []byte) {
	f, err := os.OpenFile(filepath.Join(s.dir, corruptFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s: %q\n", time.Now().UTC().Format(time.RFC3339), from, raw)
}

// put writes ne's record to the journal; the flusher syncs it.
func (s *store) put(old, ne *entry) error {
	if s.journal == nil {
		return ErrClosed
	}
	n, err := s.append(diskLine{Op: "put", Rec: toDisk(ne)})
	if err != nil {
		ne.lineLen = 0
		if old != nil {
			ne.lineLen = old.lineLen
		}
		return err
	}
	if old != nil {
		s.liveBytes -= old.lineLen
	}
	ne.lineLen = n
	s.liveBytes += n
	return nil
}

// prune writes that an exited record was dropped; its line's bytes are no
// longer live.
func (s *store) prune(e *entry) error {
	if s.journal == nil {
		return ErrClosed
	}
	if _, err := s.append(diskLine{Op: "prune", ID: e.c.ID}); err != nil {
		return err
	}
	s.liveBytes -= e.lineLen
	return nil
}

func (s *store) retire(id contid.ID) error {
	if s.journal == nil {
		return ErrClosed
	}
	n, err := s.append(diskLine{Op: "retire", ID: id})
	if err == nil {
		s.liveBytes += n
	}
	return err
}

// append writes one line in place over the padding and leaves the sync to
// the flusher or to the caller.
func (s *store) append(l diskLine) (int64, error) {
	n, err := s.write(l)
	if err != nil {
		s.failed.Store(true)
		return 0, err
	}
	if s.kick != nil {
		s.dirty()
	}
	return n, nil
}

func (s *store) write(l diskLine) (int64, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return 0, err
	}
	b = append(b, '\n')
	if end := s.journalBytes + int64(len(b)); end > s.journalCap {
		if err := s.grow(max(s.journalCap+journalChunk, end)); err != nil {
			return 0, err
		}
	}
	if _, err := s.journal.WriteAt(b, s.journalBytes); err != nil {
		// Zero a partial line, or the next record would be glued to it
		// and lost with it.
		_, _ = s.journal.WriteAt(make([]byte, len(b)), s.journalBytes)
		return 0, fmt.Errorf("write %s: %w", journalFile, err)
	}
	s.journalBytes += int64(len(b))
	s.mu.Lock()
	s.written = s.journalBytes
	s.mu.Unlock()
	return int64(len(b)), nil
}

// grow extends the journal with zeros up to size. Not synced here: the
// next sync (fdatasync also writes the size it needs) carries it, and a
// size lost to a power loss only loses unsynced lines.
func (s *store) grow(size int64) error {
	if _, err := s.journal.WriteAt(make([]byte, size-s.journalCap), s.journalCap); err != nil {
		return fmt.Errorf("extend %s: %w", journalFile, err)
	}
	s.journalCap = size
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// maybeCompact rewrites the snapshot once the journal holds mostly
// superseded lines.
func (s *store) maybeCompact(r *Registry) error {
	if s.journal == nil || s.journalBytes < minCompactBytes || s.journalBytes <= 2*s.liveBytes {
		return nil
	}
	return s.compact(r)
}

// compact writes every record to a new snapshot, renames it into place and
// empties the journal. A crash between the two leaves a journal whose
// lines repeat the snapshot: replaying them is harmless.
func (s *store) compact(r *Registry) error {
	var buf bytes.Buffer
	write := func(l diskLine) (int64, error) {
		b, err := json.Marshal(l)
		if err != nil {
			return 0, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
		return int64(len(b) + 1), nil
	}
	// The lease must outlive the journal's lease lines this drops: IDs
	// handed out under it after the compaction get no new lease line.
	if _, err := write(diskLine{Op: "snapshot", Version: formatVersion, HWM: r.hwm, Lease: s.lease, Sealed: r.sealed}); err != nil {
		return err
	}
	ids := make([]contid.ID, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	lens := make([]int64, len(ids))
	var live int64
	for i, id := range ids {
		n, err := write(diskLine{Op: "put", Rec: toDisk(r.byID[id])})
		if err != nil {
			return err
		}
		lens[i] = n
		live += n
	}
	retired := make([]contid.ID, 0, len(r.retired))
	for id := range r.retired {
		retired = append(retired, id)
	}
	slices.Sort(retired)
	for _, id := range retired {
		n, err := write(diskLine{Op: "retire", ID: id})
		if err != nil {
			return err
		}
		live += n
	}

	tmp := filepath.Join(s.dir, snapshotFile+".tmp")
	if err := writeSynced(tmp, buf.Bytes()); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, snapshotFile)); err != nil {
		return fmt.Errorf("install snapshot: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("sync state directory: %w", err)
	}

	if s.journal == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, journalFile), os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("open %s: %w", journalFile, err)
		}
		s.journal = f
	}
	if err := s.resetJournal(); err != nil {
		s.failed.Store(true)
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("sync state directory: %w", err)
	}
	r.mu.Lock()
	for i, id := range ids {
		r.byID[id].lineLen = lens[i]
	}
	r.mu.Unlock()
	s.liveBytes = live
	return nil
}

// resetJournal empties the journal and preallocates it again, synced:
// the truncation must be on disk before new lines land at offset 0, or a
// power loss could mix them with the old ones.
func (s *store) resetJournal() error {
	s.mu.Lock()
	s.gen++
	s.written, s.synced = 0, 0
	s.mu.Unlock()
	if err := s.journal.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", journalFile, err)
	}
	s.journalBytes, s.journalCap = 0, 0
	if err := s.grow(journalChunk); err != nil {
		return err
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", journalFile, err)
	}
	return nil
}

func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func toDisk(e *entry) *diskRecord {
	d := &diskRecord{
		ID:         e.c.ID,
		Chain:      e.c.Chain,
		Flags:      e.c.Flags,
		Name:       e.c.Name,
		Unit:       e.c.Unit,
		Manager:    e.c.Manager,
		Image:      e.c.Image,
		ManagerID:  e.c.ManagerID,
		UUID:       e.c.UUID,
		State:      e.c.State,
		Created:    e.c.Created.UnixNano(),
		OwnerUID:   e.c.OwnerUID,
		OwnerPID:   e.c.OwnerPID,
		OwnerStart: e.c.OwnerStart,

		HeldProcesses: e.c.HeldProcesses,
	}
	if !e.c.Exited.IsZero() {
		d.Exited = e.c.Exited.UnixNano()
	}
	for _, cg := range e.c.Cgroups {
		d.Cgroups = append(d.Cgroups, diskCgroup(cg))
	}
	for i, pid := range e.c.PIDs {
		d.Procs = append(d.Procs, diskProc{PID: pid, Start: e.starts[i]})
	}
	return d
}

func fromDisk(d *diskRecord) (*entry, error) {
	if d.ID == contid.Unset || d.ID == contid.Invalid {
		return nil, fmt.Errorf("record with invalid ID %d", uint64(d.ID))
	}
	if len(d.Chain) == 0 || d.Chain[0] != d.ID || len(d.Chain) > contid.MaxDepth {
		return nil, fmt.Errorf("container %d: bad chain %v", d.ID, d.Chain)
	}
	for _, x := range d.Chain {
		if x == contid.Unset || x == contid.Invalid {
			return nil, fmt.Errorf("container %d: bad chain %v", d.ID, d.Chain)
		}
	}
	if d.State != StateActive && d.State != StateExited {
		return nil, fmt.Errorf("container %d: unknown state %q", d.ID, d.State)
	}
	if err := ValidateUUID(d.UUID); err != nil {
		return nil, fmt.Errorf("container %d: %w", d.ID, err)
	}
	uuid := d.UUID
	if uuid == "" {
		// A record from before instance UUIDs (or written by an older
		// contidd after a downgrade) gets a fresh one here. Open's
		// compaction writes it to the snapshot before any change, so
		// the record keeps that UUID from then on; its entries from
		// before the upgrade carry none.
		uuid = NewUUID()
	}
	e := &entry{c: Container{
		ID:         d.ID,
		Chain:      contid.Chain(slices.Clone(d.Chain)),
		Flags:      d.Flags,
		Name:       d.Name,
		Unit:       d.Unit,
		Manager:    d.Manager,
		Image:      d.Image,
		ManagerID:  d.ManagerID,
		UUID:       uuid,
		State:      d.State,
		Created:    time.Unix(0, d.Created).UTC(),
		OwnerUID:   d.OwnerUID,
		OwnerPID:   d.OwnerPID,
		OwnerStart: d.OwnerStart,

		HeldProcesses: d.HeldProcesses,
	}}
	if d.Exited != 0 {
		e.c.Exited = time.Unix(0, d.Exited).UTC()
	}
	for _, cg := range d.Cgroups {
		if cg.Path != "" {
			if err := ValidateCgroupPath(cg.Path); err != nil {
				return nil, fmt.Errorf("container %d: %w", d.ID, err)
			}
		}
		e.c.Cgroups = append(e.c.Cgroups, Cgroup(cg))
	}
	for _, p := range d.Procs {
		if p.PID == 0 {
			return nil, fmt.Errorf("container %d: process 0", d.ID)
		}
		e.c.PIDs = append(e.c.PIDs, p.PID)
		e.starts = append(e.starts, p.Start)
	}
	return e, nil
}
