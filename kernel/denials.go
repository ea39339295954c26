package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/contid/contid"
)

// DenialsSuppressed reads each container's total of denials its budget
// kept out of the ring buffer (denial_budget, bpf/denial.c). The totals
// only grow while the entry lives; user space keeps what it journaled.
func (b *BPF) DenialsSuppressed() (map[contid.ID]uint64, error) {
	out := map[contid.ID]uint64{}
	var (
		id  uint64
		val denialBudget
	)
	it := b.maps.DenialBudget.Iterate()
	for it.Next(&id, &val) {
		if val.Suppressed > 0 {
			out[contid.ID(id)] = val.Suppressed
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read denial budgets: %w", err)
	}
	return out, nil
}

// ForgetDenials removes id's budget, once its container is released, and
// returns the suppressed total it held, so that the caller can journal
// what it has not yet; the mark of what was journaled goes with it. A
// container without an entry was never refused anything: 0, no error.
// Lookup and delete are one operation, so a denial the kernel counts in
// between is not lost between them.
func (b *BPF) ForgetDenials(id contid.ID) (uint64, error) {
	var val denialBudget
	err := b.maps.DenialBudget.LookupAndDelete(uint64(id), &val)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("forget the denial budget of container %d: %w", id, err)
	}
	if err := b.maps.DenialSaid.Delete(uint64(id)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return val.Suppressed, fmt.Errorf("forget what was journaled of container %d's denials: %w", id, err)
	}
	return val.Suppressed, nil
}

// DenialsSaid reads how much of each container's suppressed total an
// earlier contidd journaled (denial_said), which a new one goes on from.
func (b *BPF) DenialsSaid() (map[contid.ID]uint64, error) {
	out := map[contid.ID]uint64{}
	var id, said uint64
	it := b.maps.DenialSaid.Iterate()
	for it.Next(&id, &said) {
		out[contid.ID(id)] = said
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read what was journaled of the denials: %w", err)
	}
	return out, nil
}

// NoteDenialsSaid records that the journal has said said of id's
// suppressed total. The map is sized like denial_budget, whose entries
// it follows; a full one is an error, and a restart may then say that
// container's count again.
func (b *BPF) NoteDenialsSaid(id contid.ID, said uint64) error {
	if err := b.maps.DenialSaid.Update(uint64(id), said, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("note what was journaled of container %d's denials: %w", id, err)
	}
	return nil
}
