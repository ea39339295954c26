package kernel

import (
	"maps"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/contid/contid"
)

// The guards fill denial_budget (bpf/denial.c; the VM tier floods them);
// here the entries are written as the kernel leaves them, and user space
// must read every total, leave out containers with nothing suppressed,
// and on release take the final total and the entry with it.
func TestDenialBudgetReadAndForget(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	entries := map[uint64]denialBudget{
		11: {Tat: 1, Suppressed: 900},
		12: {Tat: 2, Suppressed: 0}, // within its budget so far
		13: {Tat: 3, Suppressed: 1},
	}
	for id, v := range entries {
		if err := b.maps.DenialBudget.Update(id, v, ebpf.UpdateNoExist); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.NoteDenialsSaid(11, 640); err != nil {
		t.Fatal(err)
	}
	if said, err := b.DenialsSaid(); err != nil || !maps.Equal(said, map[contid.ID]uint64{11: 640}) {
		t.Fatalf("DenialsSaid = %v, %v; want 11: 640", said, err)
	}
	tests := []struct {
		name       string
		forget     contid.ID
		wantFinal  uint64
		wantTotals map[contid.ID]uint64
	}{
		{"read all", 0, 0, map[contid.ID]uint64{11: 900, 13: 1}},
		{"forget one", 11, 900, map[contid.ID]uint64{13: 1}},
		{"forget again", 11, 0, map[contid.ID]uint64{13: 1}},
		{"forget one never counted", 12, 0, map[contid.ID]uint64{13: 1}},
		{"forget one never refused", 99, 0, map[contid.ID]uint64{13: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.forget != 0 {
				final, err := b.ForgetDenials(tt.forget)
				if err != nil {
					t.Fatal(err)
				}
				if final != tt.wantFinal {
					t.Fatalf("ForgetDenials(%d) = %d, want %d", tt.forget, final, tt.wantFinal)
				}
			}
			got, err := b.DenialsSuppressed()
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.wantTotals) {
				t.Fatalf("DenialsSuppressed = %v, want %v", got, tt.wantTotals)
			}
			// The journaled marks follow the budgets: one is gone with
			// its container's.
			said, err := b.DenialsSaid()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := said[11]; ok && tt.forget == 11 {
				t.Fatalf("DenialsSaid still holds container 11 after ForgetDenials: %v", said)
			}
		})
	}
}
