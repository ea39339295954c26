package kernel

import (
	"errors"
	"testing"

	"github.com/contid/contid"
)

// The configured MaxDepth reaches the kernel through Load: with 2, a
// cgroup made under an autotag parent that sits in a depth-2 container
// stays untagged; loading the same pins again with 3 lets the next one
// nest (the control, which also shows that a pinned limit from the
// earlier load does not linger).
func TestLoadMaxDepthCapsAutotag(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	load := func(depth int) *BPF {
		t.Helper()
		b, err := Load(Options{PinDir: pinDir, Mode: testMode(), MaxDepth: depth})
		if err != nil {
			t.Fatalf("Load (MaxDepth=%d): %v", depth, err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}

	b := load(2)
	outer := newTestCgroup(t, nil, "depth-outer")
	inner := newTestCgroup(t, outer, "inner")
	a, c := mustAllocate(t, b), mustAllocate(t, b)
	mustTagCgroup(t, b, outer, contid.Tag{Chain: contid.Chain{a}, Flags: contid.FlagAllowNesting})
	mustTagCgroup(t, b, inner, contid.Tag{Chain: contid.Chain{c, a}, Flags: contid.FlagAllowNesting})
	if err := b.SetAutotagParents([]uint64{inner.id}); err != nil {
		t.Fatal(err)
	}
	// A defer, not a cleanup: it must run on whichever load is open
	// last, before the cleanups close it.
	defer func() { _ = b.SetAutotagParents(nil) }()

	third := newTestCgroup(t, inner, "third")
	if tag, err := b.CgroupTag(third.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("third level with MaxDepth=2: tag %s, err %v; want ErrNotTagged", tag.Chain, err)
	}

	b.Close()
	b = load(3)
	again := newTestCgroup(t, inner, "third-again")
	tag, err := b.CgroupTag(again.id)
	if err != nil {
		t.Fatalf("third level with MaxDepth=3: %v", err)
	}
	if len(tag.Chain) != 3 || tag.Chain[1] != c || tag.Chain[2] != a {
		t.Errorf("third level with MaxDepth=3: chain %s, want [new %d %d]", tag.Chain, c, a)
	}
}

func TestLoadRejectsMaxDepthOutOfRange(t *testing.T) {
	requireBPF(t)
	for _, depth := range []int{-1, contid.MaxDepth + 1} {
		if b, err := Load(Options{PinDir: testPinDir(t), Mode: testMode(), MaxDepth: depth}); err == nil {
			b.Close()
			t.Errorf("Load(MaxDepth=%d) succeeded, want an error", depth)
		}
	}
}
