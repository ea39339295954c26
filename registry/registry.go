// Package registry holds contid's container records and decides every
// tagging rule of the design (write-once, ownership, IdInUse, nesting, no
// self-tagging, limits). It applies its decisions through the small Kernel
// interface and keeps its records in an append-only journal under a state
// directory, so it can be tested without root, a bus or eBPF.
//
// Durability. Every change is written to the journal before the call that
// made it returns, so a crash of contidd loses nothing, but it is synced by
// a background flusher within about a second (flushInterval), not before
// the call returns: an fdatasync per tag would cost more than the whole
// rest of TagCgroup. A power loss can therefore lose the last second of
// record metadata (name, unit, owner, pod cgroups, exit), never an ID's
// uniqueness: an ID is handed out only under a synced lease that covers it
// (one fdatasync per leaseBlock IDs), and after a crash every ID up to the
// lease counts as used, so allocation skips ahead by up to leaseBlock and
// an unrecorded ID below it is refused to explicit requests. What such a
// loss takes matters little: the containers died with the host, and each
// grant was already sent to the audit log and the systemd journal. See
// store.go for the mechanics.
package registry

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/contid/contid"
)

// State is a container's lifecycle state.
type State string

const (
	StateActive State = "active"
	// StateExited: the cgroup emptied or was removed. The record is kept
	// so late audit events can still be attributed, and its ID is never
	// given out again.
	StateExited State = "exited"
)

// Cgroup names one cgroup of a container.
type Cgroup struct {
	Path string // relative to the cgroup2 root, e.g. /machine.slice/x.scope
	ID   uint64 // the cgroup2 inode id, as bpf_get_current_cgroup_id sees it
}

// Container is one audit container ID and what contid knows about it.
type Container struct {
	ID    contid.ID
	Chain contid.Chain // innermost first; Chain[0] == ID
	Flags contid.Flags
	Name  string
	Unit  string
	// Manager, Image and ManagerID say what started the container: the
	// container manager ("podman", "nspawn", "api"), the image it runs
	// and the manager's own ID for it. Empty when nobody said.
	Manager   string
	Image     string
	ManagerID string
	// UUID is the instance UUID that names the container across hosts
	// (see uuid.go): given at creation, by the caller or at random, and
	// never changed.
	UUID string
	// Cgroups: the first is the primary one; more when the owner gives
	// the same ID to further cgroups (a pod).
	Cgroups []Cgroup
	// PIDs are processes tagged directly by TagProcess.
	PIDs    []uint32
	State   State
	Created time.Time
	Exited  time.Time // zero while active
	// OwnerPID and OwnerStart identify the process that created the ID
	// across PID reuse; zero for IDs the kernel assigned.
	OwnerUID   uint32
	OwnerPID   uint32
	OwnerStart uint64

	// HeldProcesses: the kernel's walk found processes in a cgroup of
	// the container when it tagged it. An empty cgroup then means its
	// processes are gone, not that none came yet. Saved with the record,
	// so the API layer need not read the cgroup before its reply, and a
	// contidd restarted after the processes ended still sees the exit.
	HeldProcesses bool
}

// Parent is the ID this container is nested in, or contid.Unset.
func (c *Container) Parent() contid.ID { return c.Chain.Parent() }

// Depth is the length of the chain: 1 for a top-level container.
func (c *Container) Depth() int { return len(c.Chain) }

func (c *Container) clone() *Container {
	cp := *c
	cp.Chain = slices.Clone(c.Chain)
	cp.Cgroups = slices.Clone(c.Cgroups)
	cp.PIDs = slices.Clone(c.PIDs)
	return &cp
}

// Caller is who asks for a tag, as the D-Bus layer established it.
type Caller struct {
	PID, UID uint32
	Start    uint64 // process start time; with PID it identifies the caller
	// Privileged: UID 0 when the caller connected, or polkit said yes
	// for org.contid1.tag (docs/THREAT-MODEL.md, "Who may tag").
	Privileged bool
	Container  contid.ID // the caller's own ID, contid.Unset if none
	Cgroup     string    // relative to the cgroup2 root
}

// Options are the per-tag options of the D-Bus API.
type Options struct {
	Name string
	// Manager, Image and ManagerID are recorded as given; see Container.
	Manager   string
	Image     string
	ManagerID string
	// UUID is the caller's own instance UUID for a new container (an
	// orchestrator's pod UID); empty draws a random one.
	UUID         string
	AllowNesting bool
	JoinIgnore   bool
	// AllowBPF and AllowModules open enforcing mode's refusal of BPF
	// programs and kernel modules for this container alone
	// (contid.FlagAllowBPF, FlagAllowModules).
	AllowBPF     bool
	AllowModules bool
}

func (o Options) flags() contid.Flags {
	var f contid.Flags
	if o.AllowNesting {
		f |= contid.FlagAllowNesting
	}
	if o.JoinIgnore {
		f |= contid.FlagJoinIgnore
	}
	if o.AllowBPF {
		f |= contid.FlagAllowBPF
	}
	if o.AllowModules {
		f |= contid.FlagAllowModules
	}
	return f
}

// CgroupTarget is a cgroup to tag.
type CgroupTarget struct {
	Path string
	ID   uint64
	Unit string
}

// ProcessTarget is one fresh process to tag.
type ProcessTarget struct {
	PID           uint32
	Start         uint64
	Cgroup        string // the process's cgroup, relative to the cgroup2 root
	PIDFD         int
	ChildOfCaller bool
}

// Kernel is what the registry needs of the kernel layer; *kernel.BPF
// satisfies it.
type Kernel interface {
	AllocateID() (contid.ID, error)
	ClaimID(id contid.ID) error // an error wrapping contid.ErrIDTaken when taken
	SetFloor(floor contid.ID) error
	TagCgroup(cgroupID uint64, tag contid.Tag) (int, error)
	TagProcess(pidfd int, tag contid.Tag) error
}

// Config tunes limits and injects the environment.
type Config struct {
	MaxDepth      int // default 8, never more than contid.MaxDepth
	MaxContainers int // active containers, default 65536
	// KeepExited is how many exited records are kept, default 10,000;
	// beyond it the oldest exits are pruned (see pruneExited).
	KeepExited int
	// OwnerAlive says whether the owner process still runs (pidfd or
	// /proc start time); nil means owners are considered gone.
	OwnerAlive func(pid uint32, start uint64) bool
	Now        func() time.Time // nil: time.Now
	// Logf receives warnings about damaged state files; they are also
	// kept for Warnings.
	Logf func(format string, args ...any)
	// OwnCgroup is contidd's own cgroup, relative to the cgroup2 root:
	// it, its ancestors and the processes in it are never tagged.
	OwnCgroup string
}

const (
	defaultMaxContainers = 65536
	defaultKeepExited    = 10000
)

type procKey struct {
	pid   uint32
	start uint64
}

// entry is the registry's own copy of a container plus what the public
// type leaves out.
type entry struct {
	c      Container
	starts []uint64 // start times of c.PIDs, same order
	// lineLen is the size of the record's latest journal line, to know
	// how much of the log is live.
	lineLen int64
}

// Registry is the set of containers. It is safe for concurrent use: changes
// are serialised (they end in a kernel call and a journal write, and now
// and then a lease sync), lookups only wait for the short moment a change
// is published.
type Registry struct {
	cfg Config
	k   Kernel

	// change serialises every mutation from decision to publication, so
	// a decision cannot be invalidated before it is applied. Mutators read
	// the indexes below without mu; they write them only under mu.
	change sync.Mutex
	mu     sync.RWMutex

	byID  map[contid.ID]*entry
	paths map[string]*entry // cgroup paths of active containers
	cgIDs map[uint64]*entry // cgroup ids of active containers
	procs map[procKey]*entry
	// uuids holds the UUIDs of active containers: a caller's UUID must
	// not name two living containers at once.
	uuids   map[string]*entry
	below   map[string]int // active container cgroups strictly below a path
	active  int
	hwm     contid.ID
	retired map[contid.ID]bool // burnt IDs: allocated or claimed, never recorded
	// sealed: a run ended without Close while IDs up to here were leased,
	// so an unrecorded one among them may have been handed out and its
	// record lost; or an exited record up to here was pruned. Explicit
	// requests for them are refused.
	sealed contid.ID

	// exitedPaths and exitedCgIDs point at the exited record with the
	// highest ID holding a cgroup, so looking up a path or cgroup id that
	// no active container has (every TagCgroup of a new cgroup does) is a
	// map lookup instead of a scan of every record.
	exitedPaths map[string]*entry
	exitedCgIDs map[uint64]*entry
	// exitOrder lists the exited records oldest exit first, the order in
	// which pruneExited drops them.
	exitOrder []contid.ID

	st       *store
	closed   bool
	warnings []string
}

// Open loads the records persisted under dir (creating it if needed),
// compacts the journal and raises the kernel's allocation floor to the
// highest ID ever seen or, after a crash, leased, so no ID is handed out
// twice across restarts or reboots.
func Open(dir string, k Kernel, cfg Config) (*Registry, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: no kernel", contid.ErrInvalidArgs)
	}
	switch {
	case cfg.MaxDepth == 0:
		cfg.MaxDepth = contid.MaxDepth
	case cfg.MaxDepth < 1 || cfg.MaxDepth > contid.MaxDepth:
		return nil, fmt.Errorf("%w: MaxDepth %d is outside 1..%d", contid.ErrInvalidArgs, cfg.MaxDepth, contid.MaxDepth)
	}
	switch {
	case cfg.MaxContainers == 0:
		cfg.MaxContainers = defaultMaxContainers
	case cfg.MaxContainers < 0:
		return nil, fmt.Errorf("%w: MaxContainers %d is negative", contid.ErrInvalidArgs, cfg.MaxContainers)
	}
	switch {
	case cfg.KeepExited == 0:
		cfg.KeepExited = defaultKeepExited
	case cfg.KeepExited < 0:
		return nil, fmt.Errorf("%w: KeepExited %d is negative", contid.ErrInvalidArgs, cfg.KeepExited)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registry{
		cfg:     cfg,
		k:       k,
		byID:    make(map[contid.ID]*entry),
		paths:   make(map[string]*entry),
		cgIDs:   make(map[uint64]*entry),
		procs:   make(map[procKey]*entry),
		uuids:   make(map[string]*entry),
		below:   make(map[string]int),
		retired: make(map[contid.ID]bool),

		exitedPaths: make(map[string]*entry),
		exitedCgIDs: make(map[uint64]*entry),
	}
	st, err := openStore(dir, r)
	if err != nil {
		return nil, err
	}
	r.st = st
	r.orderExits()
	if err := r.pruneExited(); err != nil {
		st.close()
		return nil, err
	}
	if err := k.SetFloor(r.hwm); err != nil {
		st.close()
		return nil, fmt.Errorf("raise the kernel's ID floor to %d: %w", r.hwm, err)
	}
	return r, nil
}

// Close syncs the journal, marks the shutdown clean and releases the state
// directory. Lookups keep answering from memory; changes fail with
// ErrClosed.
func (r *Registry) Close() error {
	r.change.Lock()
	defer r.change.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.st.close()
}

// Warnings lists what was wrong with the state files at Open (torn or
// corrupt lines that were skipped).
func (r *Registry) Warnings() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.warnings)
}

func (r *Registry) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.warnings = append(r.warnings, msg)
	r.mu.Unlock()
	r.logf("%s", msg)
}

// logf reports a problem met while running, which Warnings leaves out.
func (r *Registry) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	} else {
		fmt.Fprintf(os.Stderr, "contid registry: "+format+"\n", args...)
	}
}

// HighWater is the largest ID the registry has ever seen, or after a
// crash, leased.
func (r *Registry) HighWater() contid.ID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.hwm
}

// Get returns the container with that ID.
func (r *Registry) Get(id contid.ID) (*Container, error) {
	if id == contid.Unset || id == contid.Invalid {
		return nil, fmt.Errorf("%w: %d is not a container ID", contid.ErrInvalidArgs, uint64(id))
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.byID[id]; e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container has ID %d", contid.ErrNoSuchContainer, id)
}

// ByCgroupPath returns the container one of whose cgroups is exactly path:
// the active one if any, else the most recent that exited.
func (r *Registry) ByCgroupPath(path string) (*Container, error) {
	if err := ValidateCgroupPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.paths[path]; e != nil {
		return e.c.clone(), nil
	}
	if e := r.exitedPaths[path]; e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container has cgroup %s", contid.ErrNoSuchContainer, path)
}

// ByCgroupID returns the container one of whose cgroups has that id: the
// active one if any, else the most recent that exited.
func (r *Registry) ByCgroupID(id uint64) (*Container, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.cgIDs[id]; e != nil {
		return e.c.clone(), nil
	}
	if e := r.exitedCgIDs[id]; id != 0 && e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container has cgroup id %d", contid.ErrNoSuchContainer, id)
}

// Enclosing returns the active container whose cgroup is path or its
// nearest ancestor: the container a process in path belongs to.
func (r *Registry) Enclosing(path string) (*Container, error) {
	if err := ValidateCgroupPath(path); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.enclosing(path); e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container encloses cgroup %s", contid.ErrNoSuchContainer, path)
}

// ByUnit returns the container of a systemd unit: the active one if any,
// else the most recent that exited.
func (r *Registry) ByUnit(unit string) (*Container, error) {
	if unit == "" {
		return nil, fmt.Errorf("%w: empty unit name", contid.ErrInvalidArgs)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.find(func(e *entry) bool { return e.c.Unit == unit }); e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container for unit %s", contid.ErrNoSuchContainer, unit)
}

// ByName returns the container with that name: the active one if any, else
// the most recent that exited (a machine restarted under the same name gets
// a new ID).
func (r *Registry) ByName(name string) (*Container, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty container name", contid.ErrInvalidArgs)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.find(func(e *entry) bool { return e.c.Name == name }); e != nil {
		return e.c.clone(), nil
	}
	return nil, fmt.Errorf("%w: no container named %q", contid.ErrNoSuchContainer, name)
}

// Row is what a listing shows of one container.
type Row struct {
	ID, Parent contid.ID
	Name, Unit string
	Cgroup     string // the primary cgroup's path; empty if none
}

// Rows lists every container, sorted by ID. It copies only what a row
// shows: clients list often, and a copy of every whole record each time
// (List) is garbage that makes the collector run for every other call
// too.
func (r *Registry) Rows() []Row {
	r.mu.RLock()
	out := make([]Row, 0, len(r.byID))
	for _, e := range r.byID {
		row := Row{ID: e.c.ID, Parent: e.c.Parent(), Name: e.c.Name, Unit: e.c.Unit}
		if len(e.c.Cgroups) > 0 {
			row.Cgroup = e.c.Cgroups[0].Path
		}
		out = append(out, row)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// List returns copies of every record, sorted by ID.
func (r *Registry) List() []*Container {
	r.mu.RLock()
	out := make([]*Container, 0, len(r.byID))
	for _, e := range r.byID {
		out = append(out, e.c.clone())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ActiveIDs returns the IDs of the active containers, in no order: a cheap
// way to visit them all without copying every record at once.
func (r *Registry) ActiveIDs() []contid.ID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]contid.ID, 0, r.active)
	for id, e := range r.byID {
		if e.c.State == StateActive {
			ids = append(ids, id)
		}
	}
	return ids
}

// Active counts the active containers.
func (r *Registry) Active() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.active
}

// enclosing walks up from path; a handful of map lookups however many
// containers exist.
func (r *Registry) enclosing(path string) *entry {
	for p := path; ; p = parentPath(p) {
		if e := r.paths[p]; e != nil {
			return e
		}
		if p == "/" {
			return nil
		}
	}
}

// find prefers an active match, then the exited match with the highest ID.
func (r *Registry) find(match func(*entry) bool) *entry {
	var best *entry
	for _, e := range r.byID {
		if !match(e) {
			continue
		}
		switch {
		case best == nil:
			best = e
		case (e.c.State == StateActive) != (best.c.State == StateActive):
			if e.c.State == StateActive {
				best = e
			}
		case e.c.ID > best.c.ID:
			best = e
		}
	}
	return best
}
