package audit_test

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// TestExecLoopStalled: a tagged container runs thousands of short
// processes (/bin/true) as fast as it can while the reader, the audit
// daemon behind a 1 MiB socket, takes nothing for 8 s; most of the
// processes have exited long before their events are read. Every exec
// written is attributed to the container (a few lose their arguments on
// the full socket and are written from their SYSCALL record), and every
// serial from the loop's first event to its last is written or counted
// lost, once. The
// control without a stall loses nothing.
func TestExecLoopStalled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall time.Duration
	}{
		{"no stall", 0},
		{"stalled", 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuditSession(t)
			s.resetLost = true
			b := tracker(t)
			s.setBacklog(8192, 1000)
			s.addRule(execRule("contid-test-" + randomSuffix(t)))
			cg := newCgroup(t, b, nil, "execstall", true)
			reg := fakeContainers{cg.chain.ID(): {cg.chain, "execstall", "execstall.scope"}}
			j := testenv.StartJournald(t)
			w, err := journal.NewWriter(j.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			spool, err := audit.NewSpool(0)
			if err != nil {
				t.Fatal(err)
			}
			defer spool.Close()
			r, err := audit.NewReader(audit.Config{Source: audit.Unicast, UnicastReceiveBuffer: 1 << 20, Spool: spool}, b)
			if err != nil {
				t.Fatal(err)
			}
			f := journal.NewForwarder(w, reg, journal.Config{Queue: 1024, WriteUntagged: true, Done: spool.Done, Unreported: spool})
			stall, halt := runStalling(t, r, f)
			defer halt()
			released := time.AfterFunc(tc.stall, func() { close(stall) })
			defer released.Stop()
			marker := "x" + randomSuffix(t)
			res := startHelper(t, cg.fd, 6000, 0, "/bin/true", marker)()
			waitRecords(t, r, 2*time.Second, 120*time.Second)
			time.Sleep(6 * time.Second)
			halt()
			fs := f.Stats()
			id := idStr(cg.chain.ID())
			// The loop's events are the execs of its program that name
			// the marker, as argv[1] or in the command line, and the
			// container's execs of it written without either: a full
			// socket can drop an event's later records and keep its
			// SYSCALL record, which names the process and the program.
			trueExe, err := filepath.EvalSymlinks("/bin/true")
			if err != nil {
				t.Fatal(err)
			}
			attributed, unattributed, partial := 0, 0, 0
			var lo, hi uint64
			seen := map[string]bool{}
			for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID", "AUDIT_EVENT_TYPES", "AUDIT_CONTAINER_ID", "AUDIT_CONTAINER_ATTRIBUTION", "AUDIT_CONTAINER_CANDIDATE", "AUDIT_FIELD_PID", "AUDIT_FIELD_PPID", "AUDIT_FIELD_A1", "AUDIT_FIELD_PROCTITLE"}, "AUDIT_FIELD_EXE="+trueExe) {
				if seen[e.Get("AUDIT_EVENT_ID")] {
					continue
				}
				named := slices.Contains(e["AUDIT_FIELD_A1"], marker) || strings.Contains(e.Get("AUDIT_FIELD_PROCTITLE"), " "+marker)
				ours := e.Get("AUDIT_CONTAINER_ID") == id
				switch {
				case named:
				case ours:
					partial++
					t.Logf("written without its arguments: event %s pid %s, records %s", e.Get("AUDIT_EVENT_ID"), e.Get("AUDIT_FIELD_PID"), e.Get("AUDIT_EVENT_TYPES"))
				default:
					continue // another process's
				}
				seen[e.Get("AUDIT_EVENT_ID")] = true
				if ours {
					attributed++
				} else {
					unattributed++
					t.Logf("not attributed to %s: event %s pid %s ppid %s: container %q, attribution %q, candidates %q", id,
						e.Get("AUDIT_EVENT_ID"), e.Get("AUDIT_FIELD_PID"), e.Get("AUDIT_FIELD_PPID"),
						e.Get("AUDIT_CONTAINER_ID"), e.Get("AUDIT_CONTAINER_ATTRIBUTION"), e.Get("AUDIT_CONTAINER_CANDIDATE"))
				}
				serial, _ := strconv.ParseUint(e.Get("AUDIT_EVENT_ID"), 10, 32)
				if lo == 0 || serial < lo {
					lo = serial
				}
				hi = max(hi, serial)
			}
			all := map[uint64]bool{}
			for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID"}, "_TRANSPORT=journal") {
				if serial, err := strconv.ParseUint(e.Get("AUDIT_EVENT_ID"), 10, 32); err == nil && serial >= lo && serial <= hi {
					all[serial] = true
				}
			}
			var entries uint64
			for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageEventsLost) {
				n, _ := strconv.ParseUint(e.Get("AUDIT_LOST_COUNT"), 10, 64)
				entries += n
			}
			t.Logf("%s: %d execs in %.2fs; written %d attributed (%d without arguments), %d not; serials %d..%d (%d): %d written; loss entries %d; EventsLost %d (kernel %d, reader %d)",
				tc.name, res.offered, res.seconds, attributed, partial, unattributed, lo, hi, hi-lo+1, len(all), entries, fs.Lost, fs.LostKernel, fs.LostReader)
			if unattributed != 0 {
				t.Errorf("%d execs of the container written without it", unattributed)
			}
			if got := uint64(len(all)) + entries; got != hi-lo+1 || entries != fs.Lost {
				t.Errorf("serials %d..%d: %d written + %d in loss entries = %d (EventsLost %d), want %d", lo, hi, len(all), entries, got, fs.Lost, hi-lo+1)
			}
			if uint64(attributed)+fs.Lost < uint64(res.offered) {
				t.Errorf("%d execs: %d attributed + %d lost", res.offered, attributed, fs.Lost)
			}
			if tc.stall == 0 && fs.Lost != 0 {
				t.Errorf("without a stall %d counted lost", fs.Lost)
			}
		})
	}
}
