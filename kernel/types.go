package kernel

import "github.com/contid/contid"

// Go mirrors of the records in bpf/contid.h. Field order and sizes must
// match the C structs exactly; there is no implicit padding in either.

const maxDepth = contid.MaxDepth

type cgroupTag struct {
	ID     uint64
	Parent uint64
	Depth  uint32
	Flags  uint32
	Chain  [maxDepth]uint64
}

type taskTag struct {
	ID    uint64
	Flags uint32
	_     uint32
}

type pidRecord struct {
	ID      uint64
	StartNS uint64
	ExitNS  uint64
}

type pidTag struct {
	Cur  pidRecord
	Prev pidRecord
}

const nameLen = 64

type rawEvent struct {
	Kind           uint32
	PID            uint32
	TID            uint32
	Op             uint32
	ID             uint64
	CgroupID       uint64
	ParentCgroupID uint64
	Count          uint64
	BoottimeNS     uint64
	Depth          uint32
	Flags          uint32
	Chain          [maxDepth]uint64
	Name           [nameLen]byte
}

// Modes of the tag iterator (ITER_* in contid.h).
const (
	iterCgroup  = 1
	iterProcess = 2
)

// Results the tag iterator writes per task (ITER_TAGGED, ITER_REFUSED).
const (
	iterTagged  = 1
	iterRefused = 2
)

type iterTarget struct {
	CgroupID uint64
	TGID     uint32
	Mode     uint32
	Tag      cgroupTag
}

type iterRecord struct {
	TID    uint32
	Result uint32
}

type configValue struct {
	MaxDepth uint32
	Allow    uint32 // allowBPF | allowModules
}

// Bits of configValue.Allow (ALLOW_* in contid.h).
const (
	allowBPF     = 1
	allowModules = 2
)

// Kinds of protected_ids keys (PROTECT_* in contid.h).
const (
	protectMap  = 1
	protectProg = 2
	protectLink = 3
)

type protectedKey struct {
	Kind uint32
	ID   uint32
}

// protectedInode names a pin directory (Ino != 0) or the bpffs
// superblock that holds it (Ino == 0).
type protectedInode struct {
	Ino uint64
	Dev uint32
	_   uint32
}

// toCgroupTag encodes a tag for the kernel; the chain must already be
// validated.
func toCgroupTag(tag contid.Tag) cgroupTag {
	ct := cgroupTag{
		ID:     uint64(tag.Chain.ID()),
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
	return contid.Tag{Chain: chainOf(ct.ID, ct.Depth, &ct.Chain), Flags: contid.Flags(ct.Flags)}
}

func contidFlags(f uint32) contid.Flags { return contid.Flags(f) }
