package daemon

import (
	"strings"
	"testing"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel/audit"
)

// EnableAuditing=no leaves a switched-off kernel audit flag off and says
// so; the default (the control) switches it on. The kernel's flag is
// restored afterwards.
func TestEnableAuditingSetting(t *testing.T) {
	testenv.RequireRoot(t)
	ctl, err := audit.NewControl()
	if err != nil {
		testenv.Missing(t, "skipped: audit netlink unavailable: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	saved, err := ctl.Status()
	if err != nil {
		testenv.Missing(t, "skipped: AUDIT_GET refused (needs CAP_AUDIT_CONTROL in the initial namespaces): %v", err)
	}
	if saved.Enabled == 2 {
		testenv.Missing(t, "skipped: the audit configuration is locked (enabled=2)")
	}
	setEnabled := func(v uint32) {
		t.Helper()
		if err := ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusEnabled, Enabled: v}); err != nil {
			t.Fatalf("set the audit enabled flag to %d: %v", v, err)
		}
	}
	t.Cleanup(func() { setEnabled(saved.Enabled) })

	tests := []struct {
		name        string
		allow       bool
		wantEnabled uint32
		wantLog     string
	}{
		{"no leaves it off", false, 0, "Kernel auditing is off and EnableAuditing=no leaves it off"},
		{"yes switches it on", true, 1, "Kernel auditing was off; switched it on."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnabled(0)
			var log strings.Builder
			logger := &Logger{out: &log}
			logger.SetLevel(7)
			enableAuditing(logger, ctl, tt.allow)
			st, err := ctl.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Enabled != tt.wantEnabled {
				t.Errorf("enabled = %d after EnableAuditing=%v, want %d", st.Enabled, tt.allow, tt.wantEnabled)
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log %q does not say %q", log.String(), tt.wantLog)
			}
		})
	}
}
