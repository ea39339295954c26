package daemon_test

import (
	"strings"
	"testing"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/contid/contid/daemon"
)

// EnableAuditing=no leaves a switched-off kernel audit flag off and says
// so; the default (the control) switches it on. The kernel's flag is
// restored afterwards.
func TestEnableAuditingSetting(t *testing.T) {
	// It switches kernel auditing off: no other test may run on it then.
	ctl := auditSession(t, true)
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
			if err := ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusEnabled, Enabled: 0}); err != nil {
				t.Fatalf("switch auditing off: %v", err)
			}
			var log strings.Builder
			daemon.EnableAuditing(daemon.NewTestLogger(&log, 7), ctl, tt.allow)
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
