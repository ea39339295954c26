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
// what it has not yet. A container without an entry was never refused
// anything: 0, no error. Lookup and delete are one operation, so a
// denial the kernel counts in between is not lost between them.
func (b *BPF) ForgetDenials(id contid.ID) (uint64, error) {
	var val denialBudget
	err := b.maps.DenialBudget.LookupAndDelete(uint64(id), &val)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("forget the denial budget of container %d: %w", id, err)
	}
	return val.Suppressed, nil
}
