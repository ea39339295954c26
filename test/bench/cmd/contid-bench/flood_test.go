package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The flood counts auditd's events by key; the warm-up's keys extend the
// measured one, and must not be counted with it.
func TestAuditdKeyCount(t *testing.T) {
	log := `type=SYSCALL msg=audit(1764962000.001:10): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c items=1 ppid=1 pid=42 comm="contid-bench" exe="/tmp/b/contid-bench" subj=unconfined key="flood-7-0"
type=CWD msg=audit(1764962000.001:10): cwd="/"
type=PATH msg=audit(1764962000.001:10): item=0 name="/tmp/t/target" inode=5 nametype=NORMAL
type=EOE msg=audit(1764962000.001:10):
type=SYSCALL msg=audit(1764962000.002:11): arch=c000003e syscall=257 success=no exit=-2 a0=ffffff9c items=1 ppid=1 pid=42 comm="contid-bench" exe="/tmp/b/contid-bench" subj=unconfined key="flood-7-0"
type=SYSCALL msg=audit(1764962000.003:12): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c items=1 ppid=1 pid=42 comm="contid-bench" exe="/tmp/b/contid-bench" subj=unconfined key="flood-7-0-warmup0"
type=SYSCALL msg=audit(1764962000.004:13): arch=c000003e syscall=59 success=yes exit=0 a0=5 items=2 ppid=1 pid=43 comm="true" exe="/usr/bin/true" subj=unconfined key=(null)
type=USER_START msg=audit(1764962000.005:14): pid=44 uid=0 msg='op=PAM:session_open key="flood-7-0" res=success'
`
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"flood-7-0", 2},
		{"flood-7-0-warmup0", 1},
		{"flood-7", 0},
		{"flood-7-1", 0},
	} {
		t.Run(tc.key, func(t *testing.T) {
			got, err := auditdKeyCount(path, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("auditdKeyCount(%q) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}
