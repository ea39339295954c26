package daemon

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid/kernel/audit"
)

// The events after which contidd's audit exemption may be gone, and only
// those, ask for a look at the rules: each look stalls the audit records
// of tag calls while the kernel lists the rules.
func TestExemptionMayBeGone(t *testing.T) {
	const self = 4242
	rec := func(typ auparse.AuditMessageType, kv ...string) audit.Record {
		r := audit.Record{Type: typ}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Fields = append(r.Fields, audit.Field{Key: kv[i], Value: kv[i+1]})
		}
		return r
	}
	tests := []struct {
		name string
		ev   audit.Event
		want bool
	}{
		{"a rule removed (auditctl -D)", audit.Event{Records: []audit.Record{rec(auparse.AUDIT_CONFIG_CHANGE, "auid", "0", "op", "remove_rule", "key", "contid-self", "list", "4", "res", "1")}}, true},
		{"a rule added", audit.Event{Records: []audit.Record{rec(auparse.AUDIT_CONFIG_CHANGE, "op", "add_rule", "list", "4", "res", "1")}}, false},
		{"auditing switched", audit.Event{Records: []audit.Record{rec(auparse.AUDIT_CONFIG_CHANGE, "op", "set", "audit_enabled", "1", "old", "0")}}, false},
		{"a system call of contidd", audit.Event{PID: self, HasPID: true, Records: []audit.Record{rec(auparse.AUDIT_SYSCALL, "syscall", "321", "pid", "4242"), rec(auparse.AUDIT_PROCTITLE)}}, true},
		{"a system call of another process", audit.Event{PID: self + 1, HasPID: true, Records: []audit.Record{rec(auparse.AUDIT_SYSCALL, "syscall", "321", "pid", "4243")}}, false},
		{"contidd's own record of a tag", audit.Event{PID: self, HasPID: true, Records: []audit.Record{rec(auparse.AUDIT_VIRT_MACHINE_ID, "pid", "4242", "msg", "virt=contid op=set")}}, false},
	}
	for _, tt := range tests {
		if got := exemptionMayBeGone(&tt.ev, self); got != tt.want {
			t.Errorf("%s: exemptionMayBeGone = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// countingKeeper counts the looks keepExempt takes.
type countingKeeper struct{ looks atomic.Int32 }

func (k *countingKeeper) EnsureExempt() (bool, error) {
	k.looks.Add(1)
	return false, nil
}

// keepExempt looks when asked, within a second, not on a short period;
// many asks in a row cost one look, and at most one a second.
func TestKeepExemptLooksWhenAsked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &countingKeeper{}
	check := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		keepExempt(ctx, nil, k, check)
	}()
	defer func() { cancel(); <-done }()

	waitLooks := func(want int32, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for k.looks.Load() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := k.looks.Load(); got != want {
			t.Fatalf("%d looks, want %d", got, want)
		}
	}
	// Unasked, no look comes before the fallback (30 s).
	time.Sleep(300 * time.Millisecond)
	waitLooks(0, 0)
	askCheck(check)
	waitLooks(1, time.Second)
	// A burst of asks (auditctl -D removing many rules) right after a
	// look: one more look, after the gap.
	start := time.Now()
	for range 50 {
		askCheck(check)
	}
	waitLooks(2, exemptionGap+time.Second)
	if took := time.Since(start); took < exemptionGap-50*time.Millisecond {
		t.Errorf("second look after %v, want the gap of %v", took, exemptionGap)
	}
	time.Sleep(exemptionGap + 200*time.Millisecond)
	waitLooks(2, 0)
}
