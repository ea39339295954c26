package kernel

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/procstat"
)

var (
	// ErrPinMismatch: a pinned map does not match what this build expects
	// (an incompatible upgrade); contid refuses to drop live tags.
	ErrPinMismatch = errors.New("pinned map is incompatible with this build")
	// ErrEnforcingUnavailable: enforcing mode was required but the probe
	// says the kernel cannot do it.
	ErrEnforcingUnavailable = errors.New("enforcing mode unavailable")
)

// Load modes for Options.Mode.
const (
	ModeAuto      = "auto"
	ModeTracking  = "tracking"
	ModeEnforcing = "enforcing"
)

// Options configures Load.
type Options struct {
	// PinDir holds the pinned maps and links; default PinDir. It must be
	// on a bpffs; /sys/fs/bpf is mounted if nothing is there.
	PinDir string
	// Mode: "auto" (default) probes, "tracking" skips the LSM programs,
	// "enforcing" fails unless they load.
	Mode string
	// MaxDepth caps the nesting depth of the kernel's autotag,
	// 1..contid.MaxDepth; 0 means contid.MaxDepth. It is written on every
	// Load, so a pinned value from an earlier configuration never lingers.
	MaxDepth int
	// AllowBPF and AllowModules let tagged tasks load BPF programs and
	// kernel modules in enforcing mode, which the guards otherwise refuse.
	// Written on every Load, as MaxDepth is.
	AllowBPF     bool
	AllowModules bool
	// DenialBurst and DenialRate ration each container's recorded
	// denials (kernel/bpf/denial.c): DenialBurst at once, DenialRate more
	// per second; past them a denial only adds to the container's
	// suppressed total. Either 0 records every denial. Written on every
	// Load, as MaxDepth is.
	DenialBurst uint32
	DenialRate  uint32
}

// BPF is the loaded kernel layer.
type BPF struct {
	pinDir string
	mode   contid.Mode
	reason string

	maps contidMaps
	// allMaps holds the same maps by name, for what treats them all
	// alike: the programs' MapReplacements, protectObjects and Close.
	allMaps map[string]*ebpf.Map
	links   []link.Link
	iter    *ebpf.Program
	// identity is contid_identity, in allMaps too (adopt.go).
	identity *ebpf.Map
	// toBind are the maps bound to every linked program (adopt.go).
	toBind []boundMap
	// What adopt found by ID and pinned again, for the daemon to say.
	adoptedMaps, adoptedLinks int
	// The pins of rebuilt maps this Load replaced (migrate.go): while
	// there are any, no pinned link is kept, for its program uses the
	// maps replaced.
	replacedMaps []string

	// tagMu serialises the users of iter_target (TagCgroup, TagProcess).
	tagMu sync.Mutex
	// allocMu serialises user-space allocations against each other; the
	// kernel's autotag is kept apart by id_claims.
	allocMu sync.Mutex

	readMu   sync.Mutex
	ring     *ringbuf.Reader
	lostSeen uint64

	// cfgMu guards cfg, the value of contid_config as last written.
	cfgMu sync.Mutex
	cfg   configValue
}

// The programs each mode attaches, each pinned as link_<program>. An LSM
// program is attached as one (link.AttachLSM), any other as tracing.
func trackingAttachments(p *contidProgramSpecs) []*ebpf.ProgramSpec {
	// Exit and fork first: once join and autotag start tagging, every
	// later fork and exit must already be seen.
	return []*ebpf.ProgramSpec{p.ContidExit, p.ContidFork, p.ContidJoin, p.ContidAutotag}
}

func enforcingAttachments(p *contidProgramSpecs) []*ebpf.ProgramSpec {
	return []*ebpf.ProgramSpec{
		p.ContidTaskAlloc,
		p.ContidGuardBpf,
		p.ContidGuardBpfMap,
		p.ContidGuardBpfProg,
		p.ContidGuardNetlinkSend,
		p.ContidGuardInodeUnlink,
		p.ContidGuardInodeRename,
		p.ContidGuardInodeRmdir,
		p.ContidGuardSbUmount,
		p.ContidGuardTaskKill,
		p.ContidGuardPtrace,
		p.ContidGuardTaskSetrlimit,
		p.ContidGuardTaskSetnice,
		p.ContidGuardTaskSetioprio,
		p.ContidGuardTaskSetscheduler,
		p.ContidGuardFileOpen,
		p.ContidGuardKernelReadFile,
		p.ContidGuardKernelLoadData,
		p.ContidGuardPathTruncate,
		p.ContidGuardSbMount,
		p.ContidGuardMoveMount,
		p.ContidGuardOomAdj,
		p.ContidGuardCgroupMove,
		p.ContidGuardCgroupV1Attach,
		p.ContidGuardKernelModuleRequest,
		p.ContidGuardReleaseAgentParam,
		p.ContidGuardSbRemount,
		p.ContidGuardFreeze,
	}
}

// Load creates or reuses the pinned maps and links under opts.PinDir and
// returns the kernel layer. Pins left by an earlier run (a crashed daemon)
// are reused as they are, so IDs, tags and inheritance carry on.
func Load(opts Options) (*BPF, error) {
	if opts.PinDir == "" {
		opts.PinDir = PinDir
	}
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}

	b := &BPF{pinDir: opts.PinDir}
	switch opts.Mode {
	case ModeTracking:
		b.mode, b.reason = contid.ModeTracking, "tracking mode requested in the configuration"
	case ModeAuto, ModeEnforcing:
		b.mode, b.reason = Probe()
		if opts.Mode == ModeEnforcing && b.mode != contid.ModeEnforcing {
			return nil, fmt.Errorf("%w: %s", ErrEnforcingUnavailable, b.reason)
		}
	default:
		return nil, fmt.Errorf("unknown mode %q (want auto, tracking or enforcing)", opts.Mode)
	}

	if err := ensureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	spec, err := loadContid()
	if err != nil {
		return nil, fmt.Errorf("parse contid's eBPF object: %w", err)
	}
	var progs contidProgramSpecs
	if err := spec.Assign(&progs); err != nil {
		return nil, fmt.Errorf("parse contid's eBPF object: %w", err)
	}
	id, err := ownIdentity(opts.PinDir)
	if err != nil {
		return nil, err
	}
	if adoptHidden {
		if err := b.adopt(spec, id); err != nil {
			return nil, err
		}
	}
	if b.replacedMaps, err = replaceOutgrownPins(spec, opts.PinDir); err != nil {
		return nil, err
	}
	if err := b.openMaps(spec); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.openIdentity(id); err != nil {
		b.Close()
		return nil, err
	}
	b.allMaps[identityMap] = b.identity
	// Before autotag attaches, so no cgroup is tagged under an old limit,
	// and before the guards do, so none refuses what is allowed now.
	// SetMaxDepth writes the whole value, the exceptions with it.
	if opts.MaxDepth == 0 {
		opts.MaxDepth = maxDepth
	}
	if opts.AllowBPF {
		b.cfg.Allow |= uint32(contidAllowBitALLOW_BPF)
	}
	if opts.AllowModules {
		b.cfg.Allow |= uint32(contidAllowBitALLOW_MODULES)
	}
	b.cfg.DenialBurst, b.cfg.DenialRate = opts.DenialBurst, opts.DenialRate
	ns, err := hostMountNamespace()
	if err != nil && b.mode == contid.ModeEnforcing {
		b.Close()
		return nil, err
	}
	// Only the guards read it: tracking mode goes on without it (0).
	b.cfg.HostMntNs = ns
	if err := b.SetMaxDepth(opts.MaxDepth); err != nil {
		b.Close()
		return nil, err
	}

	atts := trackingAttachments(&progs)
	if b.mode == contid.ModeEnforcing {
		// The guards go first so nothing can tamper between the attach
		// of the trackers and theirs.
		atts = append(enforcingAttachments(&progs), atts...)
	}
	b.toBind = mapsToBind(atts, b.allMaps)
	for _, ps := range atts {
		if err := b.attach(spec, ps); err != nil {
			b.Close()
			return nil, err
		}
	}

	iter, err := b.loadProgram(spec, progs.ContidTagIter)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.iter = iter

	if b.mode == contid.ModeEnforcing {
		if err := b.protectObjects(); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// ensureBPFFS mounts bpffs on /sys/fs/bpf when nothing is mounted there
// and creates the pin directory. Under its unit contidd mounts it in its
// own mount namespace, whose mounts systemd makes slaves of the host's
// (ProtectSystem= and the like imply it), so the mount never propagates
// to the host, where it would bury the host's pins under a second bpffs;
// no MS_PRIVATE is needed. The VM tier's blind-restart checks this.
func ensureBPFFS(pinDir string) error {
	const bpffs = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(bpffs, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", bpffs, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", bpffs, err)
		}
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	if err := unix.Statfs(pinDir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", pinDir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs", pinDir)
	}
	return nil
}

// openMaps reuses each pinned map or creates and pins it: cilium/ebpf's
// pinning by name, which opens the pin under pinDir when there is one and
// checks it against this build's spec. It is the same work as by hand
// (BPF_OBJ_GET on the pin, else create and BPF_OBJ_PIN), so the guards on
// the pin directory and on contid's map IDs see nothing new: contidd is
// untagged, and a tagged task is refused the pins as before.
func (b *BPF) openMaps(all *ebpf.CollectionSpec) error {
	spec := all.Copy()
	spec.Programs = nil
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinByName
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: b.pinDir},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("%w: %s: %w", ErrPinMismatch, b.pinDir, err)
	}
	if err != nil {
		return fmt.Errorf("open or create the maps pinned in %s: %w", b.pinDir, err)
	}
	b.allMaps = maps.Clone(coll.Maps)
	if err := coll.Assign(&b.maps); err != nil {
		coll.Close()
		b.allMaps = nil
		return fmt.Errorf("open maps: %w", err)
	}
	// Assign took every map: bpf2go generates a field for each.
	coll.Close()
	return nil
}

// loadProgram loads one program of the object against the shared maps.
func (b *BPF) loadProgram(all *ebpf.CollectionSpec, ps *ebpf.ProgramSpec) (*ebpf.Program, error) {
	name := ps.Name
	spec := all.Copy()
	// Keep only the program we want so its siblings are not loaded.
	spec.Programs = map[string]*ebpf.ProgramSpec{name: spec.Programs[name]}
	if spec.Programs[name] == nil {
		return nil, fmt.Errorf("program %s missing from its object", name)
	}
	repl := map[string]*ebpf.Map{}
	for mname := range spec.Maps {
		m, ok := b.allMaps[mname]
		if !ok {
			return nil, fmt.Errorf("program %s uses unknown map %s", name, mname)
		}
		repl[mname] = m
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if ps.Type == ebpf.LSM && errors.Is(err, unix.EPERM) {
		// cilium/ebpf blames MEMLOCK for any early EPERM; for LSM
		// programs the cause is the kernel refusing the program type.
		return nil, fmt.Errorf("load %s (LSM %s): %w: this kernel refuses BPF LSM programs", name, ps.AttachTo, unix.EPERM)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s (%s %s): %w", name, ps.Type, ps.AttachTo, err)
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	return prog, nil
}

// attach makes the pinned link of a program run this build's code. A
// pinned link left by an earlier run is kept when it runs the same
// program (the common restart: nothing is detached, even briefly) and
// replaced when it runs another (an upgrade): the new link is attached
// and pinned under a temporary name first, then renamed over the old pin,
// so the hook is never left empty.
func (b *BPF) attach(spec *ebpf.CollectionSpec, ps *ebpf.ProgramSpec) error {
	pin := filepath.Join(b.pinDir, "link_"+ps.Name)
	prog, err := b.loadProgram(spec, ps)
	if err != nil {
		return err
	}
	defer prog.Close()

	old, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		running, ri, err := linkProgram(old)
		if err != nil {
			old.Close()
			return fmt.Errorf("inspect pinned link %s: %w", pin, err)
		}
		defer running.Close()
		same, err := sameProgram(ri, prog)
		if err != nil {
			old.Close()
			return fmt.Errorf("inspect pinned link %s: %w", pin, err)
		}
		if same && len(b.replacedMaps) == 0 {
			// A link pinned by a build without contid_identity gains
			// it here; one an earlier Load bound needs nothing. held is
			// nil only where the kernel reports no map IDs (before
			// 4.15), and then everything is bound again.
			held, _ := ri.MapIDs()
			if err := b.bindSet(running, held); err != nil {
				old.Close()
				return fmt.Errorf("bind the maps to the program of %s: %w", pin, err)
			}
			b.links = append(b.links, old)
			return nil
		}
		defer old.Close()
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("open pinned link %s: %w", pin, err)
	}

	// Bound before the link exists, so no linked program of the set is
	// without its identity.
	if err := b.bindSet(prog, nil); err != nil {
		return fmt.Errorf("bind the maps to %s: %w", ps.Name, err)
	}
	var l link.Link
	if ps.Type == ebpf.LSM {
		l, err = link.AttachLSM(link.LSMOptions{Program: prog})
	} else {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	}
	if err != nil {
		return fmt.Errorf("attach %s: %w", ps.Name, err)
	}
	// bpffs refuses names with a dot.
	tmp := pin + "_new"
	_ = os.Remove(tmp)
	if err := l.Pin(tmp); err != nil {
		l.Close()
		return fmt.Errorf("pin link %s: %w", ps.Name, err)
	}
	if err := os.Rename(tmp, pin); err != nil {
		l.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("pin link %s: %w", ps.Name, err)
	}
	b.links = append(b.links, l)
	return nil
}

// linkProgram opens the program a link runs, with its info.
func linkProgram(l link.Link) (*ebpf.Program, *ebpf.ProgramInfo, error) {
	info, err := l.Info()
	if err != nil {
		return nil, nil, err
	}
	running, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return nil, nil, err
	}
	ri, err := running.Info()
	if err != nil {
		running.Close()
		return nil, nil, err
	}
	return running, ri, nil
}

// sameProgram reports whether the running program ri is the same code as
// prog (same kernel program tag, which ignores map fds).
func sameProgram(ri *ebpf.ProgramInfo, prog *ebpf.Program) (bool, error) {
	pi, err := prog.Info()
	if err != nil {
		return false, err
	}
	return ri.Tag == pi.Tag && ri.Name == pi.Name, nil
}

// protectObjects lists contid's maps, programs and links in protected_ids
// for the enforcing-mode guards.
func (b *BPF) protectObjects() error {
	pm := b.maps.ProtectedIds
	put := func(kind contidProtectKind, id uint32) error {
		return pm.Update(protectedKey{Kind: kind, Id: id}, uint8(1), ebpf.UpdateAny)
	}
	for name, m := range b.allMaps {
		info, err := m.Info()
		if err != nil {
			return fmt.Errorf("map %s info: %w", name, err)
		}
		id, ok := info.ID()
		if !ok {
			return fmt.Errorf("map %s: kernel does not report IDs", name)
		}
		if err := put(contidProtectKindPROTECT_MAP, uint32(id)); err != nil {
			return fmt.Errorf("protect map %s: %w", name, err)
		}
	}
	if info, err := b.iter.Info(); err == nil {
		if id, ok := info.ID(); ok {
			if err := put(contidProtectKindPROTECT_PROG, uint32(id)); err != nil {
				return fmt.Errorf("protect iterator: %w", err)
			}
		}
	}
	for _, l := range b.links {
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("link info: %w", err)
		}
		if err := put(contidProtectKindPROTECT_LINK, uint32(info.ID)); err != nil {
			return fmt.Errorf("protect link: %w", err)
		}
		if err := put(contidProtectKindPROTECT_PROG, uint32(info.Program)); err != nil {
			return fmt.Errorf("protect program: %w", err)
		}
	}
	if err := b.protectPinDir(); err != nil {
		return err
	}
	return b.protectSelf()
}

// protectPinDir lists the pin directory and its bpffs for the unlink,
// rename, rmdir and umount guards, and the cgroup directories of the
// loading process (contidd) and its ancestors below the root for the
// file_open guard, whose control files stop, kill or starve it. Entries
// of earlier loads go (a cgroup contidd ran in before, a state directory
// ProtectDirectory lists again), so the small map cannot fill up.
func (b *BPF) protectPinDir() error {
	keys, err := pinDirKeys(b.pinDir)
	if err != nil {
		return fmt.Errorf("protect pin directory: %w", err)
	}
	cgroups, err := ownCgroupKeys()
	if err != nil {
		return fmt.Errorf("protect own cgroup: %w", err)
	}
	keys = append(keys, cgroups...)
	ancestors, err := ancestorKeys(b.pinDir)
	if err != nil {
		return fmt.Errorf("protect pin directory: %w", err)
	}
	// A mount on an ancestor of the cgroup2 hierarchy hides it as one on
	// the hierarchy does (the tmpfs on /sys/fs/cgroup of a hybrid layout).
	root, err := Cgroup2Root()
	if err != nil {
		return fmt.Errorf("protect cgroup2 ancestors: %w", err)
	}
	cgAncestors, err := ancestorKeys(root)
	if err != nil {
		return fmt.Errorf("protect cgroup2 ancestors: %w", err)
	}
	ancestors = append(ancestors, cgAncestors...)
	rootKey, err := inodeKey("/")
	if err != nil {
		return fmt.Errorf("protect /: %w", err)
	}
	im := b.maps.ProtectedInodes
	// An entry goes unless this load lists it with the same value: a
	// directory an earlier load protected that is now only an ancestor
	// must not keep guarding its files.
	want := map[protectedInode]uint8{}
	for _, k := range ancestors {
		want[k] = protectedAncestor
	}
	for _, k := range keys {
		want[k] = protectedDirectory
	}
	want[rootKey] = protectedRoot
	stale, err := keysWhere(im, func(k protectedInode, v uint8) bool { return v != protectedFile && want[k] != v })
	if err != nil {
		return fmt.Errorf("list protected directories: %w", err)
	}
	for _, k := range stale {
		_ = im.Delete(k)
	}
	for _, k := range keys {
		if err := im.Update(k, protectedDirectory, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("protect directories: %w", err)
		}
	}
	if err := im.Update(rootKey, protectedRoot, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("protect /: %w", err)
	}
	return protectAncestors(im, ancestors)
}

// ancestorKeys: the directories above dir below /, for the mount guards. A
// mount on any of them hides dir as a mount on dir does, and those guards
// see only a mount's target, not what lies below it. They are looked up
// through mounts, as the guards find a target: /sys/fs/bpf is the bpffs
// root, not the sysfs directory beneath it. / itself is listed apart
// (protectedRoot): container managers move a container's root onto / of
// their own mount namespace, which is the host's / directory
// (systemd-nspawn does), so the guards refuse a mount there only where
// it reaches the host's namespace.
func ancestorKeys(dir string) ([]protectedInode, error) {
	var keys []protectedInode
	for p := filepath.Dir(filepath.Clean(dir)); p != "/"; p = filepath.Dir(p) {
		k, err := inodeKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// protectAncestors lists keys as ancestors, leaving an entry that is
// already there as it is: a directory that is protected and also an
// ancestor keeps the stronger value, which the mount guards honour too.
func protectAncestors(im *ebpf.Map, keys []protectedInode) error {
	for _, k := range keys {
		err := im.Update(k, protectedAncestor, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("protect ancestor directories: %w", err)
		}
	}
	return nil
}

// ProtectDirectory lists dir for the unlink, rename, rmdir, truncate and
// file_open guards, and dir with its ancestors for the mount guards: in
// enforcing mode a tagged task can then neither remove, rename, truncate
// nor open for write the files in it, nor mount over it. contidd lists
// its state directory. Outside enforcing mode it does nothing.
func (b *BPF) ProtectDirectory(dir string) error {
	if b.mode != contid.ModeEnforcing {
		return nil
	}
	k, err := inodeKey(dir)
	if err != nil {
		return fmt.Errorf("protect %s: %w", dir, err)
	}
	ancestors, err := ancestorKeys(dir)
	if err != nil {
		return fmt.Errorf("protect %s: %w", dir, err)
	}
	im := b.maps.ProtectedInodes
	if err := im.Update(k, protectedDirectory, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("protect %s: %w", dir, err)
	}
	// Its filesystem as a whole, as inode 0, for the remount guard: read
	// only, it stops every write to the registry.
	if err := protectAncestors(im, append(ancestors, protectedInode{Dev: k.Dev})); err != nil {
		return fmt.Errorf("protect %s: %w", dir, err)
	}
	return nil
}

// The values of protected_inodes (PROTECTED_* in guard.c). A load sweeps
// the directories, ancestors and / it does not list again, never the file:
// the spool an earlier contidd left in systemd's store stays guarded
// while the next one starts, until it lists its own (the same file, or a
// new one that replaces it). The state directory and its ancestors are
// swept too and come back with ProtectDirectory.
const (
	protectedDirectory uint8 = 1
	protectedFile      uint8 = 2
	protectedAncestor  uint8 = 3
	protectedRoot      uint8 = 4
)

// ProtectFile lists the open file f for the file_open guard: in enforcing
// mode a tagged task cannot open it for write by any path,
// /proc/PID/fd/N included. contidd lists its audit spool, a memfd that
// systemd's file descriptor store holds too. One file is listed at a
// time: f replaces the one before. Outside enforcing mode it does
// nothing.
func (b *BPF) ProtectFile(f *os.File) error {
	if b.mode != contid.ModeEnforcing {
		return nil
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("protect %s: %w", f.Name(), err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return fmt.Errorf("protect %s: %w", f.Name(), errors.Join(err, serr))
	}
	im, key := b.maps.ProtectedInodes, statKey(&st)
	if err := im.Update(key, protectedFile, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("protect %s: %w", f.Name(), err)
	}
	before, err := keysWhere(im, func(k protectedInode, v uint8) bool { return v == protectedFile && k != key })
	if err != nil {
		return fmt.Errorf("protect %s: %w", f.Name(), err)
	}
	for _, k := range before {
		_ = im.Delete(k)
	}
	return nil
}

// pinDirKeys: the pin directory, and its bpffs as inode 0 for the umount
// guard.
func pinDirKeys(pinDir string) ([]protectedInode, error) {
	k, err := inodeKey(pinDir)
	if err != nil {
		return nil, err
	}
	return []protectedInode{k, {Dev: k.Dev}}, nil
}

// ownCgroupKeys: this process's cgroup directory and its ancestors, the
// root excepted (its files are the whole host's, and no limit there
// applies to contidd alone).
func ownCgroupKeys() ([]protectedInode, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return nil, err
	}
	own, err := CgroupOfPID(os.Getpid())
	if err != nil {
		return nil, err
	}
	var keys []protectedInode
	for p := filepath.Clean("/" + own); p != "/"; p = filepath.Dir(p) {
		k, err := inodeKey(filepath.Join(root, p))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keysWhere lists the keys of m whose entries drop accepts, for removal
// after the iteration (deleting while iterating would restart it).
func keysWhere[K comparable, V any](m *ebpf.Map, drop func(K, V) bool) ([]K, error) {
	var (
		k   K
		v   V
		out []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if drop(k, v) {
			out = append(out, k)
		}
	}
	return out, it.Err()
}

// hostMountNamespace: the inode number of PID 1's mount namespace, the
// host's, for the mount guards. contidd runs in a namespace of its own
// (ProtectSystem=), so its own is not the one to compare with. Reading
// the link takes ptrace read access to PID 1 (CAP_SYS_PTRACE of
// contidd.service).
func hostMountNamespace() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/1/ns/mnt", &st); err != nil {
		return 0, fmt.Errorf("host mount namespace: %w", err)
	}
	return uint32(st.Ino), nil
}

// inodeKey names path as the guards see it.
func inodeKey(path string) (protectedInode, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return protectedInode{}, err
	}
	return statKey(&st), nil
}

func statKey(st *unix.Stat_t) protectedInode {
	// The kernel's dev_t packs major:minor as 12:20 bits, not as glibc's
	// st_dev does.
	dev := unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)
	return protectedInode{Ino: st.Ino, Dev: dev}
}

// protectSelf lists the loading process (contidd) for the kill and
// ptrace guards, and drops the entries of earlier loaders that are gone,
// so the map does not fill up over restarts.
func (b *BPF) protectSelf() error {
	tm := b.maps.ProtectedTasks
	gone, err := keysWhere(tm, func(tgid uint32, start uint64) bool {
		now, err := procstat.StartTicks(int(tgid))
		return err != nil || now != start
	})
	if err != nil {
		return fmt.Errorf("list protected processes: %w", err)
	}
	for _, g := range gone {
		_ = tm.Delete(g)
	}
	self := os.Getpid()
	start, err := procstat.StartTicks(self)
	if err != nil {
		return fmt.Errorf("protect own process: %w", err)
	}
	if err := tm.Update(uint32(self), start, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("protect own process: %w", err)
	}
	return nil
}

// Enforcement reports the mode and why.
func (b *BPF) Enforcement() (contid.Mode, string) { return b.mode, b.reason }

// Close releases this process's file descriptors. The pinned links and
// maps stay, and with them inheritance and tags.
func (b *BPF) Close() error {
	var errs []error
	if b.ring != nil {
		errs = append(errs, b.ring.Close())
		b.ring = nil
	}
	if b.iter != nil {
		errs = append(errs, b.iter.Close())
		b.iter = nil
	}
	for _, l := range b.links {
		errs = append(errs, l.Close())
	}
	b.links = nil
	for _, m := range b.allMaps {
		errs = append(errs, m.Close())
	}
	b.maps, b.allMaps, b.identity = contidMaps{}, nil, nil
	return errors.Join(errs...)
}

// Unpin removes every pin under pinDir and the directory itself, which
// detaches the programs once no process holds them open. For tests and
// uninstall.
func Unpin(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(pinDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinDir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("unpin %s: %w", pinDir, errors.Join(errs...))
	}
	return nil
}
