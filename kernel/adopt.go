package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// A contid set (its maps and links) outlives contidd, and its pins are the
// only way back to it. Anything that hides the pin directory (a mount over
// it or over /sys/fs/bpf) would make the next Load create a second, empty
// set beside the one still running: every tag attributed before would be
// lost to the new contidd while the old programs go on tagging. So when the
// pins are missing, Load first looks for a loaded set by ID and pins it
// again.
//
// Which set is ours: several may be loaded on one kernel (tests with their
// own pin directories, a contidd in a container sharing the kernel). Each
// set carries contid_identity, a map bound to each of its linked programs
// (BPF_PROG_BIND_MAP, so it is listed among the programs' maps without any
// program reading it) that holds the pin directory's path and the loader's
// PID and cgroup namespaces. Those last until reboot and stay the same
// over contidd's restarts (its unit makes neither namespace private),
// while a container (systemd-nspawn, a runtime on cgroup v2) has its own.
// The mount namespace would not do: contidd's changes at every start
// (ProtectSystem=), and PID 1's can be read only with ptrace access to
// PID 1, which a sandbox (this project's CI host among them) refuses even
// to root. The identity is written at every Load, and the map is created
// here rather than in the eBPF object so that no program changes for it.

// identityMap names the map; the kernel keeps 15 characters of a name.
const identityMap = "contid_identity"

// identityPathMax bounds the pin directory's path stored in the identity.
const identityPathMax = 240

// identity is the value of contid_identity's one entry: namespace inodes
// and the absolute path, NUL-padded.
type identity struct {
	PidNS    uint64
	CgroupNS uint64
	Path     [identityPathMax]byte
}

var identitySpec = ebpf.MapSpec{
	Name:       identityMap,
	Type:       ebpf.Array,
	KeySize:    4,
	ValueSize:  16 + identityPathMax,
	MaxEntries: 1,
	Pinning:    ebpf.PinByName,
}

// adoptHidden is cleared by tests only, to show what Load does without
// adoption.
var adoptHidden = true

// errAdoptAmbiguous: more than one loaded set claims this pin directory.
var errAdoptAmbiguous = errors.New("more than one loaded contid set belongs to this pin directory")

// ownIdentity is the identity of a set pinned in pinDir on this system.
func ownIdentity(pinDir string) (identity, error) {
	var id identity
	abs, err := filepath.Abs(pinDir)
	if err != nil {
		return id, fmt.Errorf("identity of %s: %w", pinDir, err)
	}
	if len(abs) >= identityPathMax {
		return id, fmt.Errorf("identity of %s: path longer than %d bytes", abs, identityPathMax-1)
	}
	for _, ns := range []struct {
		name string
		ino  *uint64
	}{{"pid", &id.PidNS}, {"cgroup", &id.CgroupNS}} {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/"+ns.name, &st); err != nil {
			return id, fmt.Errorf("identity of %s: %s namespace: %w", pinDir, ns.name, err)
		}
		*ns.ino = st.Ino
	}
	copy(id.Path[:], abs)
	return id, nil
}

// openIdentity opens or creates the pinned contid_identity and writes this
// Load's identity into it.
func (b *BPF) openIdentity(id identity) error {
	m, err := ebpf.NewMapWithOptions(&identitySpec, ebpf.MapOptions{PinPath: b.pinDir})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("%w: %s: %w", ErrPinMismatch, b.pinDir, err)
	}
	if err != nil {
		return fmt.Errorf("open or create %s in %s: %w", identityMap, b.pinDir, err)
	}
	if err := m.Put(uint32(0), id); err != nil {
		m.Close()
		return fmt.Errorf("write %s: %w", identityMap, err)
	}
	b.identity = m
	return nil
}

// boundMap is a map of the set that no linked program uses, bound to each
// linked program instead; id is filled in when first needed.
type boundMap struct {
	name string
	m    *ebpf.Map
	id   ebpf.MapID
}

// mapsToBind lists the maps of all that no program in atts uses: the
// identity, and whatever only user space or the iterator uses (in
// tracking mode the guards' maps too). A program holds every map its
// code loads from the moment it is loaded, so binding those again would
// only repeat work at every start, one call per map and link; the ones
// listed here are bound so that the set can be found from its links
// alone (findSets takes the union of its programs' maps).
func mapsToBind(atts []*ebpf.ProgramSpec, all map[string]*ebpf.Map) []boundMap {
	used := map[string]bool{}
	for _, ps := range atts {
		for _, ins := range ps.Instructions {
			if ins.IsLoadFromMap() {
				used[ins.Reference()] = true
			}
		}
	}
	var out []boundMap
	for name, m := range all {
		if !used[name] {
			out = append(out, boundMap{name: name, m: m})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// bindSet binds the maps no linked program uses (mapsToBind) to prog, the
// program of a link, skipping those in held, the maps prog holds
// already. held is nil for a program this Load just loaded, which holds
// none of them. A link kept from an earlier Load had them bound then:
// asking for their IDs once per Load costs less than binding them again
// to every link.
func (b *BPF) bindSet(prog *ebpf.Program, held []ebpf.MapID) error {
	for i := range b.toBind {
		bm := &b.toBind[i]
		if held != nil {
			if bm.id == 0 {
				info, err := bm.m.Info()
				if err != nil {
					return fmt.Errorf("%s info: %w", bm.name, err)
				}
				bm.id, _ = info.ID()
			}
			if bm.id != 0 && slices.Contains(held, bm.id) {
				continue
			}
		}
		if err := prog.BindMap(bm.m); err != nil {
			return fmt.Errorf("bind %s: %w", bm.name, err)
		}
	}
	return nil
}

// loadedSet is a set found by ID whose identity matches.
type loadedSet struct {
	identity *ebpf.Map
	mapIDs   map[ebpf.MapID]bool
	maps     map[string]*ebpf.Map // by full name
	links    map[string]link.Link // by full program name
	dup      string               // a program linked twice, if any
}

func (s *loadedSet) close() {
	s.identity.Close()
	for _, m := range s.maps {
		m.Close()
	}
	for _, l := range s.links {
		l.Close()
	}
}

// adopt pins a loaded set of this pin directory again when its pins are
// gone. It runs only when the core map's pin is missing: with the pins
// there, the ordinary path reuses them. No matching set: nothing happens
// and Load creates a fresh one (a first start, or a reboot). A set loaded
// by a build without contid_identity never matches, so it is left alone as
// before. Two matching sets, or one that cannot be pinned whole, fail:
// contidd must not start a second set beside the first.
func (b *BPF) adopt(spec *ebpf.CollectionSpec, want identity) error {
	core := filepath.Join(b.pinDir, contidMapCgroupTags)
	if _, err := os.Stat(core); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("look for %s: %w", core, err)
	}
	sets, err := findSets(spec, want)
	if err != nil {
		return fmt.Errorf("look for loaded contid sets: %w", err)
	}
	defer func() {
		for _, s := range sets {
			s.close()
		}
	}()
	switch {
	case len(sets) == 0:
		return nil
	case len(sets) > 1:
		var ids []string
		for _, s := range sets {
			ids = append(ids, mapIDString(s.identity))
		}
		return fmt.Errorf("%w: %s (identity maps %v); unload all but one", errAdoptAmbiguous, b.pinDir, ids)
	}
	s := sets[0]
	if s.dup != "" {
		return fmt.Errorf("re-pin the loaded set of %s: program %s is linked twice", b.pinDir, s.dup)
	}
	if _, ok := s.maps[contidMapCgroupTags]; !ok {
		return fmt.Errorf("re-pin the loaded set of %s: its programs hold no %s", b.pinDir, contidMapCgroupTags)
	}
	// Links first and the core map last: should a pin fail, the next Load
	// sees the core pin missing and tries again; pins made already are
	// accepted when they hold the same object.
	var names []string
	for name := range s.links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := pinSame(s.links[name], filepath.Join(b.pinDir, "link_"+name)); err != nil {
			return fmt.Errorf("re-pin the loaded set of %s: %w", b.pinDir, err)
		}
	}
	names = names[:0]
	for name := range s.maps {
		if name != contidMapCgroupTags {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	names = append([]string{identityMap}, append(names, contidMapCgroupTags)...)
	for _, name := range names {
		m := s.identity
		if name != identityMap {
			m = s.maps[name]
		}
		if err := pinSame(m, filepath.Join(b.pinDir, name)); err != nil {
			return fmt.Errorf("re-pin the loaded set of %s: %w", b.pinDir, err)
		}
	}
	b.adoptedMaps, b.adoptedLinks = len(s.maps), len(s.links)
	return nil
}

func mapIDString(m *ebpf.Map) string {
	info, err := m.Info()
	if err != nil {
		return "?"
	}
	id, _ := info.ID()
	return fmt.Sprint(id)
}

// pinned is what pinSame pins: a map or a link.
type pinned interface {
	Pin(string) error
}

// pinSame pins obj at path, or accepts a pin already there that holds
// the same object.
func pinSame(obj pinned, path string) error {
	err := obj.Pin(path)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	same := false
	switch o := obj.(type) {
	case *ebpf.Map:
		old, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			return fmt.Errorf("%s is taken: %w", path, err)
		}
		defer old.Close()
		same = mapIDString(old) == mapIDString(o)
	case link.Link:
		old, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return fmt.Errorf("%s is taken: %w", path, err)
		}
		defer old.Close()
		oi, err1 := old.Info()
		ni, err2 := o.Info()
		same = err1 == nil && err2 == nil && oi.ID == ni.ID
	}
	if !same {
		return fmt.Errorf("%s is taken by another object", path)
	}
	return nil
}

// findSets walks the kernel's links and groups those whose program is one
// of the object's by the set they belong to, keeping the sets whose
// identity is want.
func findSets(spec *ebpf.CollectionSpec, want identity) ([]*loadedSet, error) {
	// The kernel keeps 15 characters of a map's name; the object's names
	// must stay apart once cut.
	mapNames := map[string]string{}
	for name := range spec.Maps {
		short := kernelName(name)
		if other, ok := mapNames[short]; ok {
			return nil, fmt.Errorf("maps %s and %s share the kernel name %s", name, other, short)
		}
		mapNames[short] = name
	}
	var (
		sets    = map[ebpf.MapID]*loadedSet{}
		verdict = map[ebpf.MapID]bool{} // identity maps seen: matches or not
	)
	fail := func(err error) ([]*loadedSet, error) {
		for _, s := range sets {
			s.close()
		}
		return nil, err
	}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // detached meanwhile
		}
		prog, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		pi, err := prog.Info()
		prog.Close()
		// cilium/ebpf recovers the full name from BTF when the kernel's
		// is cut.
		if err != nil || spec.Programs[pi.Name] == nil {
			continue
		}
		ids, _ := pi.MapIDs()
		set, err := setOf(ids, want, sets, verdict)
		if err != nil {
			return fail(err)
		}
		if set == nil {
			continue
		}
		// Each program holds the maps its code uses and those bound to
		// it (bindSet); only the union over the links is all of them.
		for _, id := range ids {
			if set.mapIDs[id] {
				continue
			}
			set.mapIDs[id] = true
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				return fail(fmt.Errorf("open map %d: %w", id, err))
			}
			mi, err := m.Info()
			name, ok := "", false
			if err == nil {
				name, ok = mapNames[mi.Name]
			}
			if !ok || set.maps[name] != nil {
				m.Close()
				continue
			}
			set.maps[name] = m
		}
		if _, ok := set.links[pi.Name]; ok {
			set.dup = pi.Name
			continue
		}
		set.links[pi.Name] = it.Take()
	}
	if err := it.Err(); err != nil {
		return fail(err)
	}
	var out []*loadedSet
	for _, s := range sets {
		out = append(out, s)
	}
	return out, nil
}

// setOf finds the identity among a program's maps and returns its set when
// the identity is want, nil otherwise.
func setOf(ids []ebpf.MapID, want identity, sets map[ebpf.MapID]*loadedSet, verdict map[ebpf.MapID]bool) (*loadedSet, error) {
	for _, id := range ids {
		if match, seen := verdict[id]; seen {
			if !match {
				return nil, nil
			}
			return sets[id], nil
		}
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		if err != nil || mi.Name != identityMap || mi.ValueSize != identitySpec.ValueSize {
			m.Close()
			continue
		}
		var got identity
		match := m.Lookup(uint32(0), &got) == nil && got == want
		verdict[id] = match
		if !match {
			m.Close()
			return nil, nil
		}
		sets[id] = &loadedSet{identity: m, mapIDs: map[ebpf.MapID]bool{},
			maps: map[string]*ebpf.Map{}, links: map[string]link.Link{}}
		return sets[id], nil
	}
	return nil, nil
}

// kernelName is name as the kernel keeps it (BPF_OBJ_NAME_LEN).
func kernelName(name string) string {
	if len(name) > unix.BPF_OBJ_NAME_LEN-1 {
		return name[:unix.BPF_OBJ_NAME_LEN-1]
	}
	return name
}

// Adopted reports how many maps and links Load found by ID and pinned
// again because their pins were hidden; zero when it did not.
func (b *BPF) Adopted() (maps, links int) { return b.adoptedMaps, b.adoptedLinks }

// Replaced names the pinned maps of an older shape that Load replaced
// with this build's (migrate.go); none when it replaced none.
func (b *BPF) Replaced() []string { return b.replacedMaps }
