package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/contid/contid"
)

// Layout of the state directory. Both files are JSON lines, so a damaged
// line costs one record, never the rest. The journal gets one synced line
// per change; the snapshot is rewritten (temp file + rename) only when the
// journal is compacted, at Open and when it outgrows twice the live data.
//
// The journal is preallocated with zeros and written in place, so syncing
// a change is an fdatasync of one data block with no size or extent
// update: about half the latency of fsync after an append. Trailing zeros
// are padding, not records.
const (
	snapshotFile = "registry.snapshot"
	journalFile  = "registry.journal"
	corruptFile  = "registry.corrupt" // damaged lines, kept for a human
	lockFile     = "registry.lock"

	formatVersion = 1
)

// journalChunk is how much zeroed space the journal grows by at a time.
const journalChunk = 1 << 20

// minCompactBytes keeps a small registry from compacting on every change.
// A variable so tests can compact without writing megabytes.
var minCompactBytes int64 = 1 << 20

type diskLine struct {
	Op      string      `json:"op"` // snapshot | put | retire
	Version int         `json:"version,omitempty"`
	HWM     contid.ID   `json:"hwm,omitempty"`
	ID      contid.ID   `json:"id,omitempty"`
	Rec     *diskRecord `json:"rec,omitempty"`
}

type diskRecord struct {
	ID         contid.ID    `json:"id"`
	Chain      []contid.ID  `json:"chain"`
	Flags      contid.Flags `json:"flags,omitempty"`
	Name       string       `json:"name,omitempty"`
	Unit       string       `json:"unit,omitempty"`
	Cgroups    []diskCgroup `json:"cgroups,omitempty"`
	Procs      []diskProc   `json:"procs,omitempty"`
	State      State        `json:"state"`
	Created    int64        `json:"created"`
	Exited     int64        `json:"exited,omitempty"`
	OwnerUID   uint32       `json:"owner_uid,omitempty"`
	OwnerPID   uint32       `json:"owner_pid,omitempty"`
	OwnerStart uint64       `json:"owner_start,omitempty"`
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
	// current records would take. Their ratio triggers compaction.
	journalBytes int64
	journalCap   int64
	liveBytes    int64
}

// openStore locks dir, loads its records into r and compacts.
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
	s := &store{dir: dir, lock: lock}
	if err := s.load(r); err != nil {
		s.close()
		return nil, err
	}
	if err := s.compact(r); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *store) close() error {
	var errs []error
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

// load replays the snapshot, then the journal, keeping the last record of
// each ID.
func (s *store) load(r *Registry) error {
	entries := make(map[contid.ID]*entry)
	for _, name := range []string{snapshotFile, journalFile} {
		if err := s.replay(name, r, entries); err != nil {
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
		r.byID[id] = e
		r.index(e)
		for _, x := range e.c.Chain {
			r.raise(x)
		}
	}
	for id := range r.retired {
		r.raise(id)
	}
	return nil
}

func (s *store) replay(name string, r *Registry, entries map[contid.ID]*entry) error {
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
		if len(raw) == 0 || allZero(raw) {
			continue
		}
		if i == len(lines)-1 {
			// No newline after it: the write was cut short by a crash.
			r.warn("%s: ignored a torn last line (%d bytes) left by an interrupted write", name, len(raw))
			s.keepCorrupt(name, raw)
			continue
		}
		if err := s.apply(raw, r, entries); err != nil {
			r.warn("%s:%d: skipped a damaged line: %v", name, i+1, err)
			s.keepCorrupt(name, raw)
		}
	}
	return nil
}

func (s *store) apply(raw []byte, r *Registry, entries map[contid.ID]*entry) error {
	var l diskLine
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	switch l.Op {
	case "snapshot":
		if l.Version != formatVersion {
			return fmt.Errorf("snapshot format %d, this contidd reads %d", l.Version, formatVersion)
		}
		r.raise(l.HWM)
	case "retire":
		if l.ID == contid.Unset || l.ID == contid.Invalid {
			return fmt.Errorf("retire of invalid ID %d", uint64(l.ID))
		}
		r.retired[l.ID] = true
	case "put":
		if l.Rec == nil {
			return errors.New("put without a record")
		}
		e, err := fromDisk(l.Rec)
		if err != nil {
			return err
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

// put appends ne's record to the journal and syncs it.
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

func (s *store) append(l diskLine) (int64, error) {
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
	if err := syscall.Fdatasync(int(s.journal.Fd())); err != nil {
		return 0, fmt.Errorf("sync %s: %w", journalFile, err)
	}
	s.journalBytes += int64(len(b))
	return int64(len(b)), nil
}

// grow extends the journal with zeros up to size and syncs the new size.
func (s *store) grow(size int64) error {
	if _, err := s.journal.WriteAt(make([]byte, size-s.journalCap), s.journalCap); err != nil {
		return fmt.Errorf("extend %s: %w", journalFile, err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", journalFile, err)
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
	if _, err := write(diskLine{Op: "snapshot", Version: formatVersion, HWM: r.hwm}); err != nil {
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
	if err := s.journal.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", journalFile, err)
	}
	s.journalBytes, s.journalCap = 0, 0
	if err := s.grow(journalChunk); err != nil {
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
		State:      e.c.State,
		Created:    e.c.Created.UnixNano(),
		OwnerUID:   e.c.OwnerUID,
		OwnerPID:   e.c.OwnerPID,
		OwnerStart: e.c.OwnerStart,
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
	e := &entry{c: Container{
		ID:         d.ID,
		Chain:      contid.Chain(slices.Clone(d.Chain)),
		Flags:      d.Flags,
		Name:       d.Name,
		Unit:       d.Unit,
		State:      d.State,
		Created:    time.Unix(0, d.Created).UTC(),
		OwnerUID:   d.OwnerUID,
		OwnerPID:   d.OwnerPID,
		OwnerStart: d.OwnerStart,
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
