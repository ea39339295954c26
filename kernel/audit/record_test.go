package audit

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

const (
	sampleSyscall = `audit(1700000000.123:4567): arch=c000003e syscall=59 success=yes exit=0 a0=55d0c8a0 a1=55d0c8b0 a2=7ffd a3=0 items=2 ppid=100 pid=1234 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="id" exe="/usr/bin/id" subj=unconfined key="exec"`
	sampleExecve  = `audit(1700000000.123:4567): argc=3 a0="id" a1="-u" a2=6E616D652077697468207370616365`
	samplePath    = `audit(1700000000.123:4567): item=0 name="/usr/bin/id" inode=1234 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`
	sampleTitle   = `audit(1700000000.123:4567): proctitle=2F62696E2F74727565006331`
	sampleUser    = `audit(1700000000.456:4568): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='virt=contid op=set contid=4,^2,^1 old-contid=-1 opid=1234 vm="web" res=success'`
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in     string
		at     time.Time
		serial uint32
		rest   string
		err    error
	}{
		{sampleSyscall, time.Unix(1700000000, 123e6), 4567, "arch=c000003e", nil},
		{"audit(1.005:1): a=b", time.Unix(1, 5e6), 1, "a=b", nil},
		{"audit(1.005:4294967295): x", time.Unix(1, 5e6), 4294967295, "x", nil},
		{"audit(1.005:4294967296): x", time.Time{}, 0, "", ErrBadHeader},
		{"audit(1:2): x", time.Time{}, 0, "", ErrBadHeader},
		{"audit(a.b:c): x", time.Time{}, 0, "", ErrBadHeader},
		{"type=SYSCALL msg=audit(1.2:3): x", time.Time{}, 0, "", ErrBadHeader},
		{"audit(1.2:3", time.Time{}, 0, "", ErrBadHeader},
	}
	for _, tt := range tests {
		at, serial, off, err := parseHeader([]byte(tt.in))
		if !errors.Is(err, tt.err) {
			t.Errorf("parseHeader(%q) error %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if !at.Equal(tt.at) || serial != tt.serial || !strings.HasPrefix(tt.in[off:], tt.rest) {
			t.Errorf("parseHeader(%q) = %v, %d, rest %q; want %v, %d, %q", tt.in, at, serial, tt.in[off:], tt.at, tt.serial, tt.rest)
		}
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		name string
		typ  auparse.AuditMessageType
		body string
		want map[string]string
	}{
		{"syscall args stay hex numbers", auparse.AUDIT_SYSCALL, `a0=55d0c8a0 comm="id" key=(null)`,
			map[string]string{"a0": "55d0c8a0", "comm": "id", "key": "(null)"}},
		{"execve args are decoded", auparse.AUDIT_EXECVE, `argc=2 a0="ls" a1=2D6C2061`,
			map[string]string{"argc": "2", "a0": "ls", "a1": "-l a"}},
		{"chunked execve arg", auparse.AUDIT_EXECVE, `a1_len=4 a1[0]=41424344`,
			map[string]string{"a1_len": "4", "a1[0]": "ABCD"}},
		{"proctitle NULs become spaces", auparse.AUDIT_PROCTITLE, `proctitle=2F62696E2F74727565006331`,
			map[string]string{"proctitle": "/bin/true c1"}},
		{"hex-encoded exe", auparse.AUDIT_SYSCALL, `exe=2F746D702F6120622F78`,
			map[string]string{"exe": "/tmp/a b/x"}},
		{"odd length is not hex", auparse.AUDIT_PATH, `name=ABC`,
			map[string]string{"name": "ABC"}},
		{"user msg is flattened", auparse.AUDIT_VIRT_MACHINE_ID, `pid=1 uid=0 msg='virt=contid op=deny vm="a" res=failed'`,
			map[string]string{"pid": "1", "uid": "0", "virt": "contid", "op": "deny", "vm": "a", "res": "failed"}},
		{"unterminated quote keeps the rest", auparse.AUDIT_PATH, `name="abc`,
			map[string]string{"name": "abc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p parser
			got := map[string]string{}
			for _, f := range p.fields(tt.typ, tt.body, nil) {
				got[f.Key] = f.Value
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields(%q) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}

func messages(t testing.TB, recs ...struct {
	typ  auparse.AuditMessageType
	text string
}) []*auparse.AuditMessage {
	t.Helper()
	var msgs []*auparse.AuditMessage
	for _, r := range recs {
		at, serial, off, err := parseHeader([]byte(r.text))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, &auparse.AuditMessage{RecordType: r.typ, Timestamp: at, Sequence: serial, RawData: r.text, Payload: off})
	}
	return msgs
}

type rec = struct {
	typ  auparse.AuditMessageType
	text string
}

func execMessages(t testing.TB) []*auparse.AuditMessage {
	return messages(t,
		rec{auparse.AUDIT_SYSCALL, sampleSyscall},
		rec{auparse.AUDIT_EXECVE, sampleExecve},
		rec{auparse.AUDIT_PATH, samplePath},
		rec{auparse.AUDIT_PROCTITLE, sampleTitle})
}

func TestEventBuild(t *testing.T) {
	var p parser
	var ev Event
	if !ev.build(&p, execMessages(t)) {
		t.Fatal("build failed")
	}
	if ev.Serial != 4567 || !ev.Time.Equal(time.Unix(1700000000, 123e6)) {
		t.Errorf("serial %d time %v", ev.Serial, ev.Time)
	}
	if !ev.HasPID || ev.PID != 1234 || ev.PPID != 100 {
		t.Errorf("pid %d (has %v) ppid %d, want 1234, 100", ev.PID, ev.HasPID, ev.PPID)
	}
	if got := ev.Syscall(); got != "execve" {
		t.Errorf("Syscall() = %q, want execve", got)
	}
	if got := ev.TypeNames(nil); !reflect.DeepEqual(got, []string{"SYSCALL", "EXECVE", "PATH", "PROCTITLE"}) {
		t.Errorf("TypeNames = %v", got)
	}
	if v, _ := ev.Get("a2"); v != "7ffd" {
		t.Errorf("first a2 is the SYSCALL one, got %q", v)
	}
	r, _ := ev.Record(auparse.AUDIT_EXECVE)
	if v, _ := r.Get("a2"); v != "name with space" {
		t.Errorf("EXECVE a2 = %q", v)
	}
	if v, _ := ev.Get("proctitle"); v != "/bin/true c1" {
		t.Errorf("proctitle = %q", v)
	}
	if ev.Tagged() {
		t.Error("unattributed event reports Tagged")
	}

	// Reuse: a second, smaller event must not keep the first one's records.
	if !ev.build(&p, messages(t, rec{auparse.AUDIT_VIRT_MACHINE_ID, sampleUser})) {
		t.Fatal("build failed")
	}
	if len(ev.Records) != 1 || ev.Serial != 4568 || ev.PID != 1 || ev.PPID != 0 {
		t.Errorf("reused event: %d records, serial %d, pid %d ppid %d", len(ev.Records), ev.Serial, ev.PID, ev.PPID)
	}
	if v, _ := ev.Get("contid"); v != "4,^2,^1" {
		t.Errorf("contid = %q", v)
	}
}

// fakeHandler records what the reader's stream callbacks deliver.
type fakeHandler struct {
	events []string
	lost   map[LossKind]uint64
}

func (h *fakeHandler) HandleEvent(ev *Event) {
	h.events = append(h.events, ev.Syscall())
}
func (h *fakeHandler) HandleLoss(k LossKind, n uint64) {
	if h.lost == nil {
		h.lost = map[LossKind]uint64{}
	}
	h.lost[k] += n
}
func (h *fakeHandler) Tick(time.Time) {}

type fakeAttributor struct {
	id    contid.ID
	how   contid.Attribution
	cands contid.Candidates
	err   error
}

func (f fakeAttributor) Attribute(uint32, uint32, time.Time) (contid.ID, contid.Attribution, contid.Candidates, error) {
	return f.id, f.how, f.cands, f.err
}

func TestStreamAttribution(t *testing.T) {
	tests := []struct {
		name      string
		attr      fakeAttributor
		tagged    bool
		ambiguous bool
		// cands are the candidates the event must carry on.
		cands contid.Candidates
	}{
		{"live", fakeAttributor{id: 42, how: contid.LiveProcess}, true, false, contid.Candidates{}},
		{"exited", fakeAttributor{id: 42, how: contid.ExitedProcess}, true, false, contid.Candidates{}},
		{"ambiguous is never attributed", fakeAttributor{id: 42, how: contid.AmbiguousPID, cands: contid.Candidates{4, 7}}, false, true, contid.Candidates{4, 7}},
		{"ambiguous, one candidate", fakeAttributor{how: contid.AmbiguousPID, cands: contid.Candidates{7}}, false, true, contid.Candidates{7}},
		{"ambiguous, no candidate left on record", fakeAttributor{how: contid.AmbiguousPID}, false, true, contid.Candidates{}},
		{"unattributed", fakeAttributor{how: contid.Unattributed}, false, false, contid.Candidates{}},
		{"error", fakeAttributor{id: 42, how: contid.AmbiguousPID, cands: contid.Candidates{4, 7}, err: kernel.ErrNoProcess}, false, false, contid.Candidates{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHandler{}
			var tagged, ambiguous bool
			var container contid.ID
			var cands contid.Candidates
			r := &Reader{attr: tt.attr, handler: handlerFunc{h, func(ev *Event) {
				tagged, ambiguous, container, cands = ev.Tagged(), ev.Ambiguous(), ev.Container, ev.Candidates
			}}}
			(*stream)(r).ReassemblyComplete(execMessages(t))
			if tagged != tt.tagged || ambiguous != tt.ambiguous {
				t.Errorf("Tagged() = %v, Ambiguous() = %v; want %v, %v", tagged, ambiguous, tt.tagged, tt.ambiguous)
			}
			if cands != tt.cands {
				t.Errorf("Candidates = %v, want %v", cands, tt.cands)
			}
			if ambiguous && container != contid.Unset {
				t.Errorf("ambiguous event carries Container %d", container)
			}
			wantAmbiguous := uint64(0)
			if tt.ambiguous {
				wantAmbiguous = 1
			}
			if got := r.Stats().Ambiguous; got != wantAmbiguous {
				t.Errorf("Ambiguous = %d, want %d", got, wantAmbiguous)
			}
		})
	}
}

type handlerFunc struct {
	*fakeHandler
	f func(*Event)
}

func (h handlerFunc) HandleEvent(ev *Event) { h.f(ev) }

// TestSerialGaps: the serials missing between the events handed on, as
// the reader counts them, across the wrap of the counter and with a late
// event's serial (a reordering, not a gap; the reassembler's own count
// went back with it and counted the serials after it again).
func TestSerialGaps(t *testing.T) {
	tests := []struct {
		name    string
		serials []uint32
		want    uint64
	}{
		{"in order", []uint32{5, 6, 7}, 0},
		{"gap", []uint32{5, 6, 12}, 5},
		{"wrap", []uint32{0xfffffffe, 0xffffffff, 0, 1}, 0},
		{"gap across the wrap", []uint32{0xfffffffe, 1}, 2},
		{"late serial", []uint32{10, 11, 5, 12}, 0},
		{"late serial, then a gap", []uint32{10, 11, 5, 15}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHandler{}
			r := &Reader{handler: h}
			for _, serial := range tt.serials {
				r.seen(serial)
			}
			if got := r.Stats().Gaps; got != tt.want {
				t.Errorf("counted %d gaps, want %d", got, tt.want)
			}
			// Over multicast, gaps alone are never reported as losses:
			// the kernel skips serials when nothing is lost.
			if h.lost[LossReader] != 0 {
				t.Errorf("reported a loss")
			}
		})
	}
}

// TestGapsAroundOverflow: over multicast a serial gap is a loss when an
// overflow explains it, reported before (the socket reports its overflow
// only once read empty) or during the window; otherwise a statistic. As
// the audit daemon every gap is a loss.
func TestGapsAroundOverflow(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name   string
		source Source
		steps  func(r *Reader)
		want   uint64
	}{
		{"multicast, no overflow", Multicast, func(r *Reader) {
			r.gapped(4)
		}, 0},
		{"multicast, gap then overflow", Multicast, func(r *Reader) {
			r.gapped(4)
			r.overflowed(time.Now())
		}, 4},
		{"multicast, overflow then gap", Multicast, func(r *Reader) {
			r.overflowed(time.Now())
			r.gapped(6)
		}, 6},
		{"multicast, gap long before the overflow", Multicast, func(r *Reader) {
			r.gapped(4)
			r.pendingGaps[0].at = t0.Add(-time.Minute)
			r.overflowed(time.Now())
		}, 0},
		{"unicast, any gap", Unicast, func(r *Reader) {
			r.gapped(3)
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHandler{}
			r := &Reader{handler: h, cfg: Config{Source: tt.source, ReassemblyTimeout: time.Second}}
			tt.steps(r)
			if got := h.lost[LossReader]; got != tt.want {
				t.Errorf("lost %d, want %d", got, tt.want)
			}
		})
	}
}

func TestOverflowWindow(t *testing.T) {
	h := &fakeHandler{}
	r := &Reader{handler: h, cfg: Config{ReassemblyTimeout: time.Second, TickInterval: 100 * time.Millisecond}}
	t0 := time.Unix(1700000000, 0)
	r.overflowed(t0)
	r.overflowed(t0.Add(time.Second))
	// However long the reader takes to work through its socket, the
	// window stays open until the probe comes back.
	r.closeOverflow(t0.Add(time.Minute))
	if h.lost[LossReader] != 0 || !r.overflow.open {
		t.Fatalf("window closed early: lost %d, open %v", h.lost[LossReader], r.overflow.open)
	}
	// No probe came back and no gap surfaced: each overrun counts once,
	// so loss is never silent.
	r.closeOverflow(t0.Add(time.Second + overflowWindowMax + time.Millisecond))
	if h.lost[LossReader] != 2 || r.overflow.open {
		t.Fatalf("after window: lost %d, open %v; want 2, false", h.lost[LossReader], r.overflow.open)
	}
	// With a gap, the gap is the count and the overruns add nothing; the
	// window ends a little after the probe came back, once reassembly
	// has reported the gap before it.
	t1 := t0.Add(10 * time.Minute)
	r.overflowed(t1)
	r.overflow.probe = false // sent, as sendProbe does
	r.probeReturned(t1.Add(time.Second))
	r.gapped(7)
	r.closeOverflow(t1.Add(2 * time.Second))
	if !r.overflow.open {
		t.Fatal("the window closed before reassembly could report the gap")
	}
	r.closeOverflow(t1.Add(5 * time.Second))
	if h.lost[LossReader] != 9 || r.overflow.open {
		t.Fatalf("lost %d, open %v; want 2+7, false", h.lost[LossReader], r.overflow.open)
	}
	// A probe that returns after a newer overflow leaves the window open
	// for that overflow's own probe.
	r.overflowed(t0.Add(20 * time.Minute))
	r.probeReturned(t0.Add(20 * time.Minute))
	r.closeOverflow(t0.Add(21 * time.Minute))
	if !r.overflow.open {
		t.Fatal("an overflow after the probe was sent closed with the earlier probe")
	}
}

func TestParseRulesFile(t *testing.T) {
	f, err := os.Open("../../units/contid.rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, err := ParseRules(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Rules) < 10 || len(rules.Refused) != 0 {
		t.Fatalf("parsed %d rules, refused %+v; want at least 10 and none refused", len(rules.Rules), rules.Refused)
	}
	for _, rl := range rules.Rules {
		if !strings.Contains(rl.Text, "-k contid") {
			t.Errorf("rule %q lacks -k contid", rl.Text)
		}
	}
}

// Every line of a rules file is either built or refused with its number
// and reason; comments and blank lines are neither.
func TestParseRules(t *testing.T) {
	file := strings.Join([]string{
		"# a comment",
		"",
		"-w /etc/shadow -p wa -k contid-shadow", // 3: a watch
		"-a always,exit -F arch=b64 -S execve -k contid",          // 4: a syscall rule
		"-a exit,always -F arch=b32 -S execve,execveat -k contid", // 5: list and action swapped
		"-D",      // 6: deletes rules
		"-b 8192", // 7: configures auditing
		"-a always,exit -S no_such_syscall -F arch=b64", // 8: unknown syscall
		"-a always",                     // 9: incomplete
		"-w /etc/passwd -p x -k contid", // 10: a watch
		"-a always,exit -F arch=b64 -S openat -F dir=/etc -k contid-etc", // 11
		"-A always,exit -F arch=b64 -S execve -k contid",                 // 12: would not go first
	}, "\n")
	got, err := ParseRules(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var built, refused []int
	for _, rl := range got.Rules {
		if len(rl.Wire) == 0 || rl.Err != nil {
			t.Errorf("line %d built without a wire form: %+v", rl.Number, rl)
		}
		built = append(built, rl.Number)
	}
	for _, rl := range got.Refused {
		if rl.Err == nil || rl.Text == "" {
			t.Errorf("line %d refused without a reason: %+v", rl.Number, rl)
		}
		refused = append(refused, rl.Number)
	}
	if want := []int{3, 4, 5, 10, 11}; !slices.Equal(built, want) {
		t.Errorf("built lines %v, want %v", built, want)
	}
	if want := []int{6, 7, 8, 9, 12}; !slices.Equal(refused, want) {
		t.Errorf("refused lines %v, want %v (%+v)", refused, want, got.Refused)
	}
	for _, rl := range got.Refused {
		if rl.Number == 6 && !errors.Is(rl.Err, ErrNotARule) {
			t.Errorf("-D refused with %v, want ErrNotARule", rl.Err)
		}
	}
}

func BenchmarkParseEvent(b *testing.B) {
	msgs := execMessages(b)
	var p parser
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		ev.build(&p, msgs)
		_ = ev.Syscall()
	}
}

// BenchmarkParseEventAuparse is the same work through auparse's map-based
// Data(), for comparison.
func BenchmarkParseEventAuparse(b *testing.B) {
	raw := []string{sampleSyscall, sampleExecve, samplePath, sampleTitle}
	types := []auparse.AuditMessageType{auparse.AUDIT_SYSCALL, auparse.AUDIT_EXECVE, auparse.AUDIT_PATH, auparse.AUDIT_PROCTITLE}
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range raw {
			m, err := auparse.Parse(types[i], r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Data(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
