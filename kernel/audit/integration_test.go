package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// execRule audits execve with a key of the test's own.
func execRule(key string) string {
	return "-a always,exit -F arch=b64 -S execve -k " + key
}

// TestExecAttributed: an exec in a tagged cgroup reaches the journal
// within 2 s with its container fields, nested containers carry every
// ancestor, a process that exits at once is still attributed, and
// untagged processes are not written.
func TestExecAttributed(t *testing.T) {
	s := newAuditSession(t)
	b := tracker(t)
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))

	outer := newCgroup(t, b, nil, "outer", true)
	inner := newCgroup(t, b, outer, "inner", true)
	untagged := newCgroup(t, b, nil, "untagged", false)
	reg := fakeContainers{
		outer.chain.ID(): {outer.chain, "outer-web", "outer.scope"},
		inner.chain.ID(): {inner.chain, "inner-db", "inner.scope"},
	}
	p := startPipeline(t, b, reg, audit.Config{}, journal.Config{})

	marker := "m" + randomSuffix(t)
	start := time.Now()
	outer.run(t, "/usr/bin/echo", "-n", marker)
	// Select by container only: another rule on the machine may match
	// the exec first and give it its own key.
	found := p.journald.WaitFor(t, 2*time.Second, 1, "AUDIT_CONTAINER_ID="+idStr(outer.chain.ID()))
	if len(found) == 0 {
		t.Fatalf("exec in container %d not in the journal within 2s (reader %+v, forwarder %+v)",
			outer.chain.ID(), p.reader.Stats(), p.fwd.Stats())
	}
	t.Logf("exec reached the journal after %v", time.Since(start).Round(time.Millisecond))
	e := found[0]
	for field, want := range map[string]string{
		"AUDIT_CONTAINER_CHAIN": outer.chain.String(),
		"AUDIT_CONTAINER_NAME":  "outer-web",
		"AUDIT_CONTAINER_UNIT":  "outer.scope",
		"SYSLOG_IDENTIFIER":     "contidd",
		"AUDIT_FIELD_SYSCALL":   "execve",
		"AUDIT_FIELD_EXE":       "/usr/bin/echo",
	} {
		if got := e.Get(field); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	if got := e["AUDIT_FIELD_A2"]; !contains(got, marker) {
		t.Errorf("AUDIT_FIELD_A2 = %q, want the marker %q among them", got, marker)
	}
	if msg := e.Get("MESSAGE"); !strings.HasPrefix(msg, fmt.Sprintf("container %d (outer-web): execve /usr/bin/echo by pid ", outer.chain.ID())) {
		t.Errorf("MESSAGE = %q", msg)
	}
	if types := e.Get("AUDIT_EVENT_TYPES"); !strings.HasPrefix(types, "SYSCALL,EXECVE") {
		t.Errorf("AUDIT_EVENT_TYPES = %q", types)
	}
	if e.Get("AUDIT_EVENT_ID") == "" {
		t.Error("no AUDIT_EVENT_ID")
	}

	// Nested: /bin/true exits at once, and the entry names both IDs.
	inner.run(t, "/bin/true", marker)
	untagged.run(t, "/bin/true", "untagged-"+marker)
	nested := p.journald.WaitFor(t, 2*time.Second, 1, "AUDIT_CONTAINER_ID="+idStr(inner.chain.ID()))
	if len(nested) != 1 {
		t.Fatalf("%d entries for the nested container, want 1 (reader %+v)", len(nested), p.reader.Stats())
	}
	within := nested[0]["AUDIT_CONTAINER_WITHIN"]
	if fmt.Sprint(within) != fmt.Sprint([]string{idStr(inner.chain.ID()), idStr(outer.chain.ID())}) {
		t.Errorf("AUDIT_CONTAINER_WITHIN = %v, want %v", within, inner.chain)
	}
	if got := nested[0].Get("AUDIT_CONTAINER_CHAIN"); got != inner.chain.String() {
		t.Errorf("chain %q, want %q", got, inner.chain.String())
	}
	// The parent's ID also finds the child's events.
	all := p.journald.Query(t, "AUDIT_CONTAINER_WITHIN="+idStr(outer.chain.ID()))
	if len(all) != 2 {
		t.Errorf("AUDIT_CONTAINER_WITHIN=%d matched %d entries, want 2", outer.chain.ID(), len(all))
	}

	// The untagged /bin/true ran before the nested entry was found; give
	// the reader a moment more, then make sure it was not written.
	p.waitIdle(t, 300*time.Millisecond, 3*time.Second)
	if got := p.journald.Query(t, "AUDIT_FIELD_PROCTITLE=/bin/true untagged-"+marker); len(got) != 0 {
		t.Errorf("untagged event written: %v", got)
	}
	if got := p.journald.Query(t, "SYSLOG_IDENTIFIER=contidd"); len(got) != 2 {
		t.Errorf("%d entries in the journal, want the 2 tagged execs", len(got))
	}
	if st := p.fwd.Stats(); st.Untagged == 0 {
		t.Errorf("forwarder saw no untagged event: %+v", st)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestUntaggedWrittenOnRequest: WriteUntagged brings untagged events in,
// without container fields.
func TestUntaggedWrittenOnRequest(t *testing.T) {
	s := newAuditSession(t)
	b := tracker(t)
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))
	untagged := newCgroup(t, b, nil, "untagged", false)
	p := startPipeline(t, b, nil, audit.Config{}, journal.Config{WriteUntagged: true})
	marker := "u" + randomSuffix(t)
	untagged.run(t, "/bin/true", marker)
	found := p.journald.WaitFor(t, 2*time.Second, 1, "AUDIT_FIELD_PROCTITLE=/bin/true "+marker)
	if len(found) != 1 {
		t.Fatalf("%d entries for the untagged exec, want 1 (reader %+v, forwarder %+v)",
			len(found), p.reader.Stats(), p.fwd.Stats())
	}
	if id := found[0].Get("AUDIT_CONTAINER_ID"); id != "" {
		t.Errorf("untagged event carries AUDIT_CONTAINER_ID=%s", id)
	}
}

// TestPIDReuse: with pid_max lowered so PIDs wrap many times, 10,000
// short processes in three containers, plus untagged ones churning the
// same PIDs, never produce an event attributed to the wrong container.
// Each process carries its container's marker, so the right answer is
// in the event itself.
func TestPIDReuse(t *testing.T) {
	s := newAuditSession(t)
	b := tracker(t)
	testenv.RequireCommand(t, "sysctl")
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))
	s.setBacklog(8192, 15000)

	const perContainer = 3334
	var cgs []*testCgroup
	reg := fakeContainers{}
	for i := 0; i < 3; i++ {
		cg := newCgroup(t, b, nil, "c"+strconv.Itoa(i), true)
		cgs = append(cgs, cg)
		reg[cg.chain.ID()] = struct {
			chain      contid.Chain
			name, unit string
		}{cg.chain, "c" + strconv.Itoa(i), ""}
	}
	untagged := newCgroup(t, b, nil, "u", false)
	p := startPipeline(t, b, reg, audit.Config{}, journal.Config{})

	const pidMax = 2048
	restorePIDMax := lowerPIDMax(t, pidMax)
	createdBefore := tasksCreated(t)
	var waits []func() helperResult
	for i, cg := range cgs {
		waits = append(waits, startHelper(t, cg.fd, perContainer, 350, "/bin/true", "c"+strconv.Itoa(i)))
	}
	waits = append(waits, startHelper(t, untagged.fd, perContainer, 350, "/bin/true", "untagged"))
	offered := 0
	for i, w := range waits {
		r := w()
		if i < 3 {
			offered += r.offered
		}
		if r.failed > 0 {
			t.Logf("helper %d: %d forks failed (PID space is small on purpose)", i, r.failed)
		}
	}
	// PIDs below 300 are never reused by the allocator.
	wraps := (tasksCreated(t) - createdBefore) / (pidMax - 300)
	restorePIDMax()
	p.waitIdle(t, time.Second, 30*time.Second)
	p.stop()

	rs, fs := p.reader.Stats(), p.fwd.Stats()
	entries := p.journald.Select(t, []string{"AUDIT_CONTAINER_ID", "AUDIT_FIELD_PROCTITLE"}, "SYSLOG_IDENTIFIER=contidd")
	perID := map[string]int{}
	wrong := 0
	for _, e := range entries {
		id, title := e.Get("AUDIT_CONTAINER_ID"), e.Get("AUDIT_FIELD_PROCTITLE")
		if !strings.HasPrefix(title, "/bin/true ") {
			continue // the helpers' own execs
		}
		marker := strings.TrimPrefix(title, "/bin/true ")
		var want string
		for i, cg := range cgs {
			if marker == "c"+strconv.Itoa(i) {
				want = idStr(cg.chain.ID())
			}
		}
		if id != want {
			wrong++
			if wrong <= 5 {
				t.Errorf("event of %q attributed to container %s, want %q", title, id, want)
			}
			continue
		}
		perID[id]++
	}
	attributed := perID[idStr(cgs[0].chain.ID())] + perID[idStr(cgs[1].chain.ID())] + perID[idStr(cgs[2].chain.ID())]
	t.Logf("pid_max 2048, PIDs wrapped ~%d times: offered %d tagged execs (+%d untagged), attributed %d (%v), ambiguous %d, misattributed %d; reader %+v; forwarder %+v",
		wraps, offered, perContainer, attributed, perID, rs.Ambiguous, wrong, rs, fs)
	if wrong > 0 {
		t.Fatalf("%d events misattributed", wrong)
	}
	if wraps < 2 {
		t.Errorf("PIDs wrapped %d times, want at least 2 for the test to mean anything", wraps)
	}
	// Ambiguous events are dropped by design, but they must stay rare,
	// or the test would pass by attributing nothing.
	if attributed < offered*9/10 {
		t.Errorf("only %d of %d tagged execs attributed", attributed, offered)
	}
}

// lowerPIDMax sets kernel.pid_max and returns a function restoring it.
func lowerPIDMax(t testing.TB, to int) func() {
	t.Helper()
	old := strings.TrimSpace(readFile(t, "/proc/sys/kernel/pid_max"))
	writeFile(t, "/proc/sys/kernel/pid_max", strconv.Itoa(to))
	var once sync.Once
	restore := func() {
		once.Do(func() { writeFile(t, "/proc/sys/kernel/pid_max", old) })
	}
	t.Cleanup(restore)
	return restore
}

// tasksCreated is the kernel's count of forks since boot; across the test
// it tells how many PIDs were handed out, and so how often they wrapped.
func tasksCreated(t testing.TB) int {
	for _, line := range strings.Split(readFile(t, "/proc/stat"), "\n") {
		if n, ok := strings.CutPrefix(line, "processes "); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no processes line in /proc/stat")
	return 0
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t testing.TB, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func contextWithStop() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

func idStr(id contid.ID) string { return strconv.FormatUint(uint64(id), 10) }

// TestRecorderReachesKernelAndJournal: granted and refused tag attempts
// show up in the kernel audit stream (read back through a multicast
// reader) and in the journal with their MESSAGE_IDs.
func TestRecorderReachesKernelAndJournal(t *testing.T) {
	newAuditSession(t)
	j := testenv.StartJournald(t)
	w, err := journal.NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctl, err := audit.NewControl()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	got := make(chan string, 64)
	r, err := audit.NewReader(audit.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := captureVirt(got)
	ctx, stop := contextWithStop()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h) }()
	defer func() { stop(); <-done; r.Close() }()
	// The reader must be subscribed before the records are written.
	time.Sleep(200 * time.Millisecond)

	id := contid.ID(900000 + time.Now().UnixNano()%100000)
	rec := journal.NewRecorder(ctl, w)
	if err := rec.RecordTag(4242, contid.Chain{id, 7}, nil, "web", "web.scope", nil); err != nil {
		t.Fatal(err)
	}
	if err := rec.RecordTag(4343, contid.Chain{id + 1}, nil, "", "", errors.New("org.contid1.AlreadyTagged")); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		fmt.Sprintf("VIRT_MACHINE_ID op=set contid=%d,^7 opid=4242 vm=web res=success", id): false,
		fmt.Sprintf("VIRT_MACHINE_ID op=set contid=%d opid=4343 vm=? res=failed", id+1):     false,
	}
	deadline := time.After(3 * time.Second)
	for remaining := len(want); remaining > 0; {
		select {
		case s := <-got:
			if seen, ok := want[s]; ok && !seen {
				want[s] = true
				remaining--
			}
		case <-deadline:
			t.Fatalf("kernel stream lacks records: %v (reader %+v)", want, r.Stats())
		}
	}
	for msgID, n := range map[string]int{journal.MessageTagGranted: 1, journal.MessageTagRefused: 1} {
		entries := j.WaitFor(t, 2*time.Second, n, "MESSAGE_ID="+msgID)
		if len(entries) != n {
			t.Errorf("MESSAGE_ID=%s: %d entries, want %d", msgID, len(entries), n)
		}
	}
}

// captureVirt reports VIRT_MACHINE_ID events as one comparable line.
type captureVirt chan string

func (c captureVirt) HandleEvent(ev *audit.Event) {
	r, ok := ev.Record(auparse.AUDIT_VIRT_MACHINE_ID)
	if !ok {
		return
	}
	get := func(k string) string { v, _ := r.Get(k); return v }
	if get("virt") != "contid" {
		return
	}
	select {
	case c <- fmt.Sprintf("VIRT_MACHINE_ID op=%s contid=%s opid=%s vm=%s res=%s", get("op"), get("contid"), get("opid"), get("vm"), get("res")):
	default:
	}
}
func (captureVirt) HandleLoss(audit.LossKind, uint64) {}
func (captureVirt) Tick(time.Time)                    {}

// TestLossReported: a tiny backlog that does not wait, and a reader that
// stalls behind a small socket buffer, lose events; the loss is counted
// and written to the journal as one entry.
func TestLossReported(t *testing.T) {
	s := newAuditSession(t)
	s.resetLost = true
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))
	s.setBacklog(1, 0)

	j := testenv.StartJournald(t)
	w, err := journal.NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := audit.NewReader(audit.Config{ReceiveBuffer: 16 << 10, StatusInterval: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := journal.NewForwarder(w, nil, journal.Config{LossInterval: time.Second})
	stall := make(chan struct{})
	h := &stallingHandler{Forwarder: f, stall: stall}
	ctx, stop := contextWithStop()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h) }()
	defer func() { stop(); <-done; r.Close() }()

	wait := startHelper(t, -1, 2000, 0, "/bin/true", "loss")
	res := wait()
	close(stall)
	entries := j.WaitFor(t, 5*time.Second, 1, "MESSAGE_ID="+journal.MessageEventsLost)
	st := f.Stats()
	t.Logf("offered %d execs in %.2fs; reader %+v; forwarder %+v", res.offered, res.seconds, r.Stats(), st)
	if st.Lost == 0 {
		t.Fatalf("no loss counted")
	}
	if len(entries) == 0 {
		t.Fatalf("no loss entry in the journal")
	}
	if len(entries) > 2 {
		t.Errorf("%d loss entries within ~2s, want the rate limit to hold them to 2", len(entries))
	}
	e := entries[0]
	if n, _ := strconv.ParseUint(e.Get("AUDIT_LOST_COUNT"), 10, 64); n == 0 {
		t.Errorf("loss entry without a count: %v", e)
	}
	if e.Get("AUDIT_LOST_SINCE") == "" || e.Get("PRIORITY") != "4" {
		t.Errorf("loss entry fields: %v", e)
	}
}

// stallingHandler blocks on the first event until stall is closed, so
// the socket overflows behind it.
type stallingHandler struct {
	*journal.Forwarder
	stall chan struct{}
}

func (h *stallingHandler) HandleEvent(ev *audit.Event) {
	<-h.stall
	h.Forwarder.HandleEvent(ev)
}

// TestLoadRules loads units/contid.rules over netlink and removes exactly
// those rules again.
func TestLoadRules(t *testing.T) {
	s := newAuditSession(t)
	added, err := s.ctl.LoadRules("../../units/contid.rules")
	t.Cleanup(func() {
		for _, wf := range added {
			if err := s.ctl.DeleteRule(wf); err != nil {
				t.Errorf("delete rule: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(added) < 10 {
		t.Fatalf("loaded %d rules, want at least 10", len(added))
	}
	// Loading again is harmless: every rule already exists.
	again, err := s.ctl.LoadRules("../../units/contid.rules")
	if err != nil || len(again) != 0 {
		t.Errorf("second load added %d rules, err %v; want 0, nil", len(again), err)
	}
	t.Logf("loaded %d rules", len(added))
}
