package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/contid/contid"
)

// ErrIDSpaceExhausted: no free ID could be claimed (id_claims is full).
var ErrIDSpaceExhausted = errors.New("no free audit container ID")

// allocScan bounds one AllocateID call; reaching it means the claims map
// is nearly full, not that IDs ran out.
const allocScan = 1 << 16

func validID(id contid.ID) bool { return id != contid.Unset && id != contid.Invalid }

func (b *BPF) counter() (uint64, error) {
	var next uint64
	if err := b.maps.IdCounter.Lookup(uint32(0), &next); err != nil {
		return 0, fmt.Errorf("read id_counter: %w", err)
	}
	return next, nil
}

// raiseCounter moves the hint forward, never back, as far as a read and a
// write can tell; a kernel increment in between only costs it retries.
func (b *BPF) raiseCounter(to uint64) error {
	cur, err := b.counter()
	if err != nil {
		return err
	}
	if cur >= to {
		return nil
	}
	if err := b.maps.IdCounter.Update(uint32(0), to, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write id_counter: %w", err)
	}
	return nil
}

// claim inserts id into id_claims unless anyone, kernel or user space,
// holds it already.
func (b *BPF) claim(id contid.ID) error {
	err := b.maps.IdClaims.Update(uint64(id), uint8(1), ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("%w: %d", ErrIDTaken, id)
	}
	if err != nil {
		return fmt.Errorf("claim ID %d: %w", id, err)
	}
	return nil
}

// AllocateID claims the next free ID above the shared counter.
func (b *BPF) AllocateID() (contid.ID, error) {
	b.allocMu.Lock()
	defer b.allocMu.Unlock()

	next, err := b.counter()
	if err != nil {
		return 0, err
	}
	id := contid.ID(next)
	for i := 0; i < allocScan; i++ {
		id++
		if !validID(id) {
			continue
		}
		err := b.claim(id)
		if errors.Is(err, ErrIDTaken) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return id, b.raiseCounter(uint64(id))
	}
	return 0, fmt.Errorf("%w: %d IDs after %d are all claimed", ErrIDSpaceExhausted, allocScan, next)
}

// ClaimID claims an explicit ID; ErrIDTaken if it is held already.
func (b *BPF) ClaimID(id contid.ID) error {
	if !validID(id) {
		return fmt.Errorf("claim ID %d: not a valid ID", id)
	}
	b.allocMu.Lock()
	defer b.allocMu.Unlock()
	return b.claim(id)
}

// SetFloor makes later allocations, user space and autotag, exceed floor.
func (b *BPF) SetFloor(floor contid.ID) error {
	b.allocMu.Lock()
	defer b.allocMu.Unlock()
	return b.raiseCounter(uint64(floor))
}

// ReleaseID removes id's entry from id_claims; a missing entry is not an
// error. The caller must hold a record of id that refuses it to every later
// explicit request (the registry's exited record, or its prune mark): from
// then on that record, not id_claims, keeps the ID unique. Allocation
// needs no entry below the counter, since both allocators, the kernel's
// autotag and AllocateID, only move up from id_counter, which every ID
// handed out in this boot lies at or below.
func (b *BPF) ReleaseID(id contid.ID) error {
	if !validID(id) {
		return fmt.Errorf("release ID %d: not a valid ID", id)
	}
	b.allocMu.Lock()
	defer b.allocMu.Unlock()
	next, err := b.counter()
	if err != nil {
		return err
	}
	// An ID above the counter could still be allocated: keep its claim.
	if uint64(id) > next {
		return fmt.Errorf("release ID %d: above the allocation counter %d", id, next)
	}
	err = b.maps.IdClaims.Delete(uint64(id))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("release ID %d: %w", id, err)
	}
	return nil
}
