package kernel

import "github.com/contid/contid"

// The records and constants shared with the eBPF programs are generated
// by bpf2go from bpf/contid.h (contid_bpfel.go); these are shorter names
// for them, never copies.
type (
	cgroupTag      = contidCgroupTag
	taskTag        = contidTaskTag
	pidRecord      = contidPidRecord
	pidTag         = contidPidTag
	rawEvent       = contidEvent
	iterTarget     = contidIterTarget
	iterRecord     = contidIterRecord
	configValue    = contidConfigValue
	protectedKey   = contidProtectedKey
	protectedInode = contidProtectedInode // a pin directory (Ino != 0) or the bpffs superblock that holds it (Ino == 0)
	autotagScope   = contidAutotagScope
	denialBudget   = contidDenialBudget
)

// maxDepth is the length of a chain as the kernel stores it
// (CONTID_MAX_DEPTH, the length of the generated Chain arrays).
const maxDepth = contid.MaxDepth

// The root package cannot import this one, so its copies of the kernel's
// numbers are checked here, at compile time: an index other than 0 into a
// one-element array does not build. contid.MaxDepth is the chain length,
// contid.Flags the bits of enum contid_flag.
var (
	_ = [1]struct{}{}[len(cgroupTag{}.Chain)-maxDepth]
	_ = [1]struct{}{}[len(rawEvent{}.Chain)-maxDepth]
	_ = [1]struct{}{}[contid.FlagAllowNesting^contid.Flags(contidContidFlagFLAG_ALLOW_NESTING)]
	_ = [1]struct{}{}[contid.FlagJoinIgnore^contid.Flags(contidContidFlagFLAG_JOIN_IGNORE)]
	_ = [1]struct{}{}[contid.FlagAutotag^contid.Flags(contidContidFlagFLAG_AUTOTAG)]
	_ = [1]struct{}{}[contid.FlagAllowBPF^contid.Flags(contidContidFlagFLAG_ALLOW_BPF)]
	_ = [1]struct{}{}[contid.FlagAllowModules^contid.Flags(contidContidFlagFLAG_ALLOW_MODULES)]
	_ = [1]struct{}{}[len(autotagScope{}.Patterns[0].Prefix)-contid.MaxScopePrefix]
	_ = [1]struct{}{}[len(autotagScope{}.Patterns[0].Suffix)-contid.MaxScopeSuffix]
)

// toCgroupTag encodes a tag for the kernel; the chain must already be
// validated.
func toCgroupTag(tag contid.Tag) cgroupTag {
	ct := cgroupTag{
		Id:     uint64(tag.Chain.ID()),
		Parent: uint64(tag.Chain.Parent()),
		Depth:  uint32(len(tag.Chain)),
		Flags:  uint32(tag.Flags),
	}
	for i, id := range tag.Chain {
		ct.Chain[i] = uint64(id)
	}
	return ct
}

func chainOf(id uint64, depth uint32, chain *[maxDepth]uint64) contid.Chain {
	if depth == 0 {
		if id == 0 {
			return nil
		}
		return contid.Chain{contid.ID(id)}
	}
	if depth > maxDepth {
		depth = maxDepth
	}
	c := make(contid.Chain, depth)
	for i := range c {
		c[i] = contid.ID(chain[i])
	}
	return c
}

func (ct cgroupTag) tag() contid.Tag {
	return contid.Tag{Chain: chainOf(ct.Id, ct.Depth, &ct.Chain), Flags: contid.Flags(ct.Flags)}
}

func contidFlags(f uint32) contid.Flags { return contid.Flags(f) }
