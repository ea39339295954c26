package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

var (
	// ErrBadTag: the tag's chain is empty, too deep or holds invalid IDs.
	ErrBadTag = errors.New("invalid tag")
	// ErrCgroupTagged: the cgroup already carries a different tag
	// (write-once; autotag may have got there first).
	ErrCgroupTagged = errors.New("cgroup already tagged with another ID")
	// ErrTagRefused: the process carries an ID the new one is not nested
	// below, so it kept it (write-once).
	ErrTagRefused = errors.New("process already tagged with another ID")
)

func validateTag(tag contid.Tag) error {
	if len(tag.Chain) == 0 || len(tag.Chain) > maxDepth {
		return fmt.Errorf("%w: chain %q has %d entries (1..%d)", ErrBadTag, tag.Chain, len(tag.Chain), maxDepth)
	}
	for _, id := range tag.Chain {
		if !validID(id) {
			return fmt.Errorf("%w: chain %q holds ID %d", ErrBadTag, tag.Chain, id)
		}
	}
	return nil
}

// TagCgroup writes cgroup_tags first and then tags the tasks already in
// the subtree: from the moment of the write every fork into the subtree
// is tagged by the fork program, and the walk catches everything that
// existed before. It returns how many live tasks the walk found in the
// subtree: those it tagged, those that already had the ID and those that
// keep another; zero means the cgroup held no process when it was tagged.
func (b *BPF) TagCgroup(cgroupID uint64, tag contid.Tag) (int, error) {
	if err := validateTag(tag); err != nil {
		return 0, err
	}
	ct := toCgroupTag(tag)

	b.tagMu.Lock()
	defer b.tagMu.Unlock()

	tags := b.maps.CgroupTags
	err := tags.Update(cgroupID, ct, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		var old cgroupTag
		if lerr := tags.Lookup(cgroupID, &old); lerr != nil {
			return 0, fmt.Errorf("tag cgroup %d: %w", cgroupID, lerr)
		}
		if old != ct {
			return 0, fmt.Errorf("%w: cgroup %d has %s, asked for %s", ErrCgroupTagged, cgroupID, old.tag().Chain, tag.Chain)
		}
		// The same tag again: finish a walk a crash may have cut short.
	} else if err != nil {
		return 0, fmt.Errorf("tag cgroup %d: %w", cgroupID, err)
	}

	w, err := b.runIter(iterTarget{CgroupId: cgroupID, Mode: contidIterModeITER_CGROUP})
	found := w.tagged + w.refused + w.present
	if err != nil {
		return found, fmt.Errorf("tag tasks of cgroup %d: %w", cgroupID, err)
	}
	return found, nil
}

// walkCounts is what one run of the tag iterator did: tasks it tagged,
// tasks that keep another ID, and (walking a cgroup) live tasks that
// already had the ID.
type walkCounts struct{ tagged, refused, present int }

// runIter runs the tag iterator once for target and counts what it did.
func (b *BPF) runIter(target iterTarget) (walkCounts, error) {
	var w walkCounts
	if err := b.maps.IterTarget.Update(uint32(0), target, ebpf.UpdateAny); err != nil {
		return w, fmt.Errorf("write iter_target: %w", err)
	}
	it, err := link.AttachIter(link.IterOptions{Program: b.iter})
	if err != nil {
		return w, fmt.Errorf("attach task iterator: %w", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return w, fmt.Errorf("open task iterator: %w", err)
	}
	defer rd.Close()
	out, err := io.ReadAll(rd)
	if err != nil {
		return w, fmt.Errorf("run task iterator: %w", err)
	}

	var rec iterRecord
	r := bytes.NewReader(out)
	for r.Len() > 0 {
		if err := binary.Read(r, binary.NativeEndian, &rec); err != nil {
			return w, fmt.Errorf("decode task iterator output: %w", err)
		}
		switch rec.Result {
		case contidIterResultITER_TAGGED:
			w.tagged++
		case contidIterResultITER_REFUSED:
			w.refused++
		case contidIterResultITER_PRESENT:
			w.present++
		}
	}
	return w, nil
}

// UntagCgroup forgets a cgroup's entry; a missing entry is not an error.
func (b *BPF) UntagCgroup(cgroupID uint64) error {
	err := b.maps.CgroupTags.Delete(cgroupID)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("untag cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// CgroupTag reads one cgroup's tag; ErrNotTagged if it has none.
func (b *BPF) CgroupTag(cgroupID uint64) (contid.Tag, error) {
	var ct cgroupTag
	err := b.maps.CgroupTags.Lookup(cgroupID, &ct)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return contid.Tag{}, fmt.Errorf("cgroup %d: %w", cgroupID, ErrNotTagged)
	}
	if err != nil {
		return contid.Tag{}, fmt.Errorf("cgroup %d: %w", cgroupID, err)
	}
	return ct.tag(), nil
}

// CgroupTags lists every tagged cgroup.
func (b *BPF) CgroupTags() (map[uint64]contid.Tag, error) {
	out := map[uint64]contid.Tag{}
	var (
		id uint64
		ct cgroupTag
	)
	it := b.maps.CgroupTags.Iterate()
	for it.Next(&id, &ct) {
		out[id] = ct.tag()
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list cgroup tags: %w", err)
	}
	return out, nil
}

// SetAutotagParents replaces the set of autotag parents.
func (b *BPF) SetAutotagParents(cgroupIDs []uint64) error {
	want := map[uint64]bool{}
	for _, id := range cgroupIDs {
		want[id] = true
	}
	m := b.maps.AutotagParents
	stale, err := keysWhere(m, func(id uint64, _ uint32) bool { return !want[id] })
	if err != nil {
		return fmt.Errorf("list autotag parents: %w", err)
	}
	// Add before removing so a parent in both sets is never missing.
	for id := range want {
		if err := m.Update(id, uint32(0), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add autotag parent %d: %w", id, err)
		}
	}
	for _, id := range stale {
		if err := m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove autotag parent %d: %w", id, err)
		}
	}
	return nil
}

// SetAutotagScopes replaces the name patterns by which the kernel tags
// some children of a parent cgroup: for each parent cgroup ID, at most
// as many patterns as one map value holds.
func (b *BPF) SetAutotagScopes(scopes map[uint64][]contid.ScopePattern) error {
	values := make(map[uint64]autotagScope, len(scopes))
	for parent, patterns := range scopes {
		var v autotagScope
		if len(patterns) > len(v.Patterns) {
			return fmt.Errorf("autotag scopes of cgroup %d: %d patterns, at most %d per parent", parent, len(patterns), len(v.Patterns))
		}
		for i, p := range patterns {
			if len(p.Prefix) > len(v.Patterns[i].Prefix) || len(p.Suffix) > len(v.Patterns[i].Suffix) || p.Prefix == "" && p.Suffix == "" {
				return fmt.Errorf("autotag scope %s: prefix or suffix out of bounds", p)
			}
			v.Patterns[i].PrefixLen, v.Patterns[i].SuffixLen = uint8(len(p.Prefix)), uint8(len(p.Suffix))
			for j := 0; j < len(p.Prefix); j++ {
				v.Patterns[i].Prefix[j] = int8(p.Prefix[j])
			}
			for j := 0; j < len(p.Suffix); j++ {
				v.Patterns[i].Suffix[j] = int8(p.Suffix[j])
			}
		}
		values[parent] = v
	}
	m := b.maps.AutotagScopes
	stale, err := keysWhere(m, func(id uint64, _ autotagScope) bool { _, ok := values[id]; return !ok })
	if err != nil {
		return fmt.Errorf("list autotag scopes: %w", err)
	}
	for id, v := range values {
		if err := m.Update(id, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set autotag scopes of cgroup %d: %w", id, err)
		}
	}
	for _, id := range stale {
		if err := m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove autotag scopes of cgroup %d: %w", id, err)
		}
	}
	return nil
}

// TagProcess tags every thread of the process behind pidfd. It follows
// the join rule: a process tagged with an ID the new one is not nested
// below keeps it and the call fails with ErrTagRefused.
func (b *BPF) TagProcess(pidfd int, tag contid.Tag) error {
	if err := validateTag(tag); err != nil {
		return err
	}
	pid, err := PIDOfPidfd(pidfd)
	if err != nil {
		return err
	}

	b.tagMu.Lock()
	defer b.tagMu.Unlock()
	w, err := b.runIter(iterTarget{Tgid: uint32(pid), Mode: contidIterModeITER_PROCESS, Tag: toCgroupTag(tag)})
	if err != nil {
		return fmt.Errorf("tag process %d: %w", pid, err)
	}
	// The PID may have been reused since the pidfd was opened; only a
	// live pidfd makes the iterator's result about the right process.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return fmt.Errorf("tag process %d: %w", pid, ErrNoProcess)
	}
	if w.refused > 0 && w.tagged == 0 {
		return fmt.Errorf("tag process %d with %s: %w", pid, tag.Chain, ErrTagRefused)
	}
	return nil
}

// ErrNotPidfd: a descriptor that does not refer to a process.
var ErrNotPidfd = errors.New("not a pidfd")

// PIDOfPidfd reads the PID a pidfd refers to from its fdinfo: ErrNoProcess
// when the process has exited or sits in a PID namespace this one cannot
// see (the kernel says -1 or 0), ErrNotPidfd for any other descriptor.
func PIDOfPidfd(pidfd int) (int, error) {
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, fmt.Errorf("descriptor %d: %w: %v", pidfd, ErrNotPidfd, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("descriptor %d: %w: bad Pid line %q", pidfd, ErrNotPidfd, line)
			}
			if pid <= 0 {
				return 0, fmt.Errorf("pidfd %d: %w", pidfd, ErrNoProcess)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("descriptor %d: %w", pidfd, ErrNotPidfd)
}

// SetMaxDepth caps the nesting depth of the kernel's autotag (the
// configured limit, 1..contid.MaxDepth). A cgroup that would nest deeper
// stays untagged rather than escape its ancestor as a top-level ID.
func (b *BPF) SetMaxDepth(depth int) error {
	if depth < 1 || depth > maxDepth {
		return fmt.Errorf("max depth %d outside 1..%d", depth, maxDepth)
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	next := b.cfg
	next.MaxDepth = uint32(depth)
	if err := b.maps.ContidConfig.Update(uint32(0), next, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set max depth: %w", err)
	}
	b.cfg = next
	return nil
}
