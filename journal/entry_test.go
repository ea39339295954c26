package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel/audit"
)

// decode parses the native protocol back into fields, in order, so tests
// check the encoding rather than compare against hand-written bytes.
func decode(t testing.TB, b []byte) [][2]string {
	t.Helper()
	var out [][2]string
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("unterminated field in %q", b)
		}
		line := b[:nl]
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			out = append(out, [2]string{string(line[:eq]), string(line[eq+1:])})
			b = b[nl+1:]
			continue
		}
		name := string(line)
		b = b[nl+1:]
		if len(b) < 8 {
			t.Fatalf("binary field %s: short length", name)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			t.Fatalf("binary field %s: bad length %d", name, n)
		}
		out = append(out, [2]string{name, string(b[:n])})
		b = b[n+1:]
	}
	return out
}

func TestEntryEncoding(t *testing.T) {
	tests := []struct {
		name  string
		build func(*Entry)
		want  [][2]string
		// binary says the value must use the length-prefixed form.
		binary bool
	}{
		{"plain", func(e *Entry) { e.Add("MESSAGE", "hello world") }, [][2]string{{"MESSAGE", "hello world"}}, false},
		{"empty value", func(e *Entry) { e.Add("X", "") }, [][2]string{{"X", ""}}, false},
		{"equals in value", func(e *Entry) { e.Add("X", "a=b") }, [][2]string{{"X", "a=b"}}, false},
		{"newline goes binary", func(e *Entry) { e.Add("MESSAGE", "two\nlines") }, [][2]string{{"MESSAGE", "two\nlines"}}, true},
		{"bytes with NUL and newline", func(e *Entry) { e.AddBytes("B", []byte{0, '\n', 0xff}) }, [][2]string{{"B", "\x00\n\xff"}}, true},
		{"uint", func(e *Entry) { e.AddUint("N", 18446744073709551615) }, [][2]string{{"N", "18446744073709551615"}}, false},
		{"sanitized", func(e *Entry) { e.AddSanitized("AUDIT_FIELD_", "a1[0]", "v") }, [][2]string{{"AUDIT_FIELD_A1_0_", "v"}}, false},
		{"sanitized dash", func(e *Entry) { e.AddSanitized("AUDIT_FIELD_", "old-auid", "1") }, [][2]string{{"AUDIT_FIELD_OLD_AUID", "1"}}, false},
		{"sanitized truncated", func(e *Entry) { e.AddSanitized("AUDIT_FIELD_", strings.Repeat("x", 100), "1") },
			[][2]string{{"AUDIT_FIELD_" + strings.Repeat("X", 64-12), "1"}}, false},
		{"repeated field", func(e *Entry) { e.AddUint("W", 1); e.AddUint("W", 2) }, [][2]string{{"W", "1"}, {"W", "2"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Entry
			tt.build(&e)
			got := decode(t, e.Bytes())
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("decoded %q, want %q", got, tt.want)
			}
			isBinary := !bytes.Contains(e.Bytes()[:bytes.IndexByte(e.Bytes(), '\n')], []byte("="))
			if isBinary != tt.binary {
				t.Errorf("binary form %v, want %v: %q", isBinary, tt.binary, e.Bytes())
			}
			for _, f := range got {
				if !ValidFieldName(f[0]) {
					t.Errorf("field name %q is invalid", f[0])
				}
			}
			e.Reset()
			if e.Len() != 0 {
				t.Errorf("Reset left %d bytes", e.Len())
			}
		})
	}
}

func TestValidFieldName(t *testing.T) {
	for name, want := range map[string]bool{
		"MESSAGE": true, "AUDIT_FIELD_A0": true, "X9": true,
		"": false, "_PID": false, "9X": false, "message": false, "A-B": false,
		strings.Repeat("A", 64): true, strings.Repeat("A", 65): false,
	} {
		if got := ValidFieldName(name); got != want {
			t.Errorf("ValidFieldName(%q) = %v, want %v", name, got, want)
		}
	}
}

// fakeSender keeps decoded entries; fail makes Send return an error.
type fakeSender struct {
	t       testing.TB
	entries [][][2]string
	fail    bool
}

func (s *fakeSender) Send(e *Entry) error {
	if s.fail {
		return ErrNoJournal
	}
	s.entries = append(s.entries, decode(s.t, e.Bytes()))
	return nil
}

func values(entry [][2]string, name string) []string {
	var v []string
	for _, f := range entry {
		if f[0] == name {
			v = append(v, f[1])
		}
	}
	return v
}

type fakeContainers map[contid.ID]struct {
	chain      contid.Chain
	name, unit string
}

func (f fakeContainers) Lookup(id contid.ID) (contid.Chain, Labels, bool) {
	c, ok := f[id]
	return c.chain, Labels{Name: c.name, Unit: c.unit}, ok
}

// execEvent runs real record text through the reader's stream callback,
// so the forwarder sees exactly what the reader would hand it.
func execEvent(t testing.TB, id contid.ID, how contid.Attribution, f *Forwarder) {
	t.Helper()
	feedExec(t, attributor{id: id, how: how}, f)
}

// feedExec pushes the records of one execve through a real audit.Feed.
func feedExec(t testing.TB, a audit.Attributor, h audit.Handler) {
	t.Helper()
	feed, err := audit.NewFeed(a, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		typ  auparse.AuditMessageType
		text string
	}{
		{auparse.AUDIT_SYSCALL, `audit(1700000000.123:4567): arch=c000003e syscall=59 success=yes exit=0 a0=55d0c8a0 a1=55d0c8b0 a2=7ffd a3=0 items=2 ppid=100 pid=1234 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="id" exe="/usr/bin/id" subj=unconfined key="contid"`},
		{auparse.AUDIT_EXECVE, `audit(1700000000.123:4567): argc=2 a0="id" a1=2D750A`},
		{auparse.AUDIT_PATH, `audit(1700000000.123:4567): item=0 name="/usr/bin/id" inode=1234 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`},
		{auparse.AUDIT_PROCTITLE, `audit(1700000000.123:4567): proctitle=6964002D75`},
	} {
		if err := feed.Push(r.typ, r.text); err != nil {
			t.Fatal(err)
		}
	}
	feed.Flush()
}

type attributor struct {
	id    contid.ID
	how   contid.Attribution
	cands contid.Candidates
}

func (a attributor) Attribute(uint32, uint32, time.Time) (contid.ID, contid.Attribution, contid.Candidates, error) {
	return a.id, a.how, a.cands, nil
}

func TestForwarderEntry(t *testing.T) {
	out := &fakeSender{t: t}
	f := NewForwarder(out, fakeContainers{4: {contid.Chain{4, 2, 1}, "web", "web.scope"}}, Config{})
	execEvent(t, 4, contid.ExitedProcess, f)
	if len(out.entries) != 1 {
		t.Fatalf("%d entries, want 1", len(out.entries))
	}
	e := out.entries[0]
	want := map[string][]string{
		"MESSAGE":                     {"container 4 (web): execve /usr/bin/id by pid 1234 uid root res=success"},
		"SYSLOG_IDENTIFIER":           {"contidd"},
		"SYSLOG_FACILITY":             {"13"},
		"PRIORITY":                    {"6"},
		"AUDIT_CONTAINER_ID":          {"4"},
		"AUDIT_CONTAINER_WITHIN":      {"4", "2", "1"},
		"AUDIT_CONTAINER_CHAIN":       {"4,^2,^1"},
		"AUDIT_CONTAINER_NAME":        {"web"},
		"AUDIT_CONTAINER_UNIT":        {"web.scope"},
		"AUDIT_CONTAINER_ATTRIBUTION": {"exited"},
		"AUDIT_EVENT_ID":              {"4567"},
		"AUDIT_EVENT_TIME":            {"1700000000.123"},
		"AUDIT_EVENT_TYPES":           {"SYSCALL,EXECVE,PATH,PROCTITLE"},
		"AUDIT_FIELD_SYSCALL":         {"execve"},
		"AUDIT_FIELD_ARCH":            {"x86_64"},
		// SYSCALL's register a1 and EXECVE's argv[1] share the name, in
		// record order, as in journald's own audit entries.
		"AUDIT_FIELD_A1":        {"55d0c8b0", "-u\n"},
		"AUDIT_FIELD_PROCTITLE": {"id -u"},
		"AUDIT_EXECVE_ARGV":     {`id "-u\n"`},
		"AUDIT_FIELD_KEY":       {"contid"},
	}
	for name, w := range want {
		if got := values(e, name); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	for _, fl := range e {
		if !ValidFieldName(fl[0]) {
			t.Errorf("invalid field name %q", fl[0])
		}
	}
	if s := f.Stats(); s.Written != 1 || s.Lost != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestForwarderUnknownContainer(t *testing.T) {
	out := &fakeSender{t: t}
	f := NewForwarder(out, fakeContainers{}, Config{})
	execEvent(t, 9, contid.LiveProcess, f)
	if len(out.entries) != 1 {
		t.Fatalf("%d entries, want 1", len(out.entries))
	}
	e := out.entries[0]
	if got := values(e, "AUDIT_CONTAINER_WITHIN"); fmt.Sprint(got) != "[9]" {
		t.Errorf("WITHIN %v, want [9]", got)
	}
	if got := values(e, "AUDIT_CONTAINER_NAME"); got != nil {
		t.Errorf("NAME %v for an unknown container", got)
	}
}

func TestForwarderUntagged(t *testing.T) {
	tests := []struct {
		name          string
		how           contid.Attribution
		writeUntagged bool
		written       int
	}{
		{"untagged skipped", contid.Unattributed, false, 0},
		{"untagged written on request", contid.Unattributed, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeSender{t: t}
			f := NewForwarder(out, nil, Config{WriteUntagged: tt.writeUntagged})
			execEvent(t, 5, tt.how, f)
			if len(out.entries) != tt.written {
				t.Fatalf("%d entries, want %d", len(out.entries), tt.written)
			}
			if tt.written > 0 {
				if got := values(out.entries[0], "AUDIT_CONTAINER_ID"); got != nil {
					t.Errorf("untagged entry carries AUDIT_CONTAINER_ID %v", got)
				}
				if got := values(out.entries[0], "MESSAGE"); !strings.HasPrefix(got[0], "execve ") {
					t.Errorf("MESSAGE %q", got)
				}
			}
			if s := f.Stats(); tt.written == 0 && s.Untagged != 1 {
				t.Errorf("Untagged = %d, want 1", s.Untagged)
			}
		})
	}
}

// TestForwarderAmbiguous: an event whose PID was reused too close to it
// to tell which process made it is written, never dropped, with its
// candidates, and without the fields a trusted match on a container
// reads (AUDIT_CONTAINER_ID, _WITHIN, _CHAIN), whether or not untagged
// events are written.
func TestForwarderAmbiguous(t *testing.T) {
	reg := fakeContainers{4: {contid.Chain{4, 2}, "web", "web.scope"}, 7: {contid.Chain{7}, "", ""}}
	tests := []struct {
		name          string
		cands         contid.Candidates
		writeUntagged bool
		message       string
		candidates    []string
	}{
		{"two containers", contid.Candidates{4, 7}, false,
			"could not tell which of containers 4 (web) and 7 (PID reused): execve /usr/bin/id by pid 1234 uid root res=success", []string{"4", "7"}},
		{"a container or an untagged process", contid.Candidates{7}, false,
			"could not tell whether container 7 or a process in no container (PID reused): execve /usr/bin/id by pid 1234 uid root res=success", []string{"7"}},
		{"no life on record", contid.Candidates{}, false,
			"could not tell which process made the call (PID reused twice since, its earlier lives no longer on record): execve /usr/bin/id by pid 1234 uid root res=success", nil},
		{"untagged written too", contid.Candidates{4, 7}, true,
			"could not tell which of containers 4 (web) and 7 (PID reused): execve /usr/bin/id by pid 1234 uid root res=success", []string{"4", "7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeSender{t: t}
			f := NewForwarder(out, reg, Config{WriteUntagged: tt.writeUntagged})
			feedExec(t, attributor{how: contid.AmbiguousPID, cands: tt.cands}, f)
			if len(out.entries) != 1 {
				t.Fatalf("%d entries, want 1", len(out.entries))
			}
			e := out.entries[0]
			want := map[string][]string{
				"MESSAGE":                     {tt.message},
				"PRIORITY":                    {"5"},
				"SYSLOG_IDENTIFIER":           {"contidd"},
				"SYSLOG_FACILITY":             {"13"},
				"AUDIT_CONTAINER_ATTRIBUTION": {"ambiguous"},
				"AUDIT_CONTAINER_CANDIDATE":   tt.candidates,
				"AUDIT_CONTAINER_ID":          nil,
				"AUDIT_CONTAINER_WITHIN":      nil,
				"AUDIT_CONTAINER_CHAIN":       nil,
				"AUDIT_CONTAINER_NAME":        nil,
				"AUDIT_EVENT_ID":              {"4567"},
				"AUDIT_EXECVE_ARGV":           {`id "-u\n"`},
			}
			for name, w := range want {
				if got := values(e, name); fmt.Sprint(got) != fmt.Sprint(w) {
					t.Errorf("%s = %q, want %q", name, got, w)
				}
			}
			if s := f.Stats(); s.Written != 1 || s.Untagged != 0 {
				t.Errorf("stats %+v, want 1 written and none untagged", s)
			}
		})
	}
}

// TestForwarderAuditingSwitch: switching kernel auditing off or on is
// written although no container caused it (the kernel names no PID), the
// switch off as a warning; other configuration changes are not.
func TestForwarderAuditingSwitch(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		written  bool
		priority string
	}{
		{"off", `audit(1700000000.200:4600): op=set audit_enabled=0 old=1 auid=0 ses=3 subj=unconfined res=1`, true, "4"},
		{"on", `audit(1700000000.300:4601): op=set audit_enabled=1 old=0 auid=0 ses=3 subj=unconfined res=1`, true, "6"},
		{"backlog", `audit(1700000000.400:4602): op=set audit_backlog_limit=64 old=8192 auid=0 ses=3 subj=unconfined res=1`, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeSender{t: t}
			f := NewForwarder(out, nil, Config{})
			feed, err := audit.NewFeed(attributor{how: contid.Unattributed}, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := feed.Push(auparse.AUDIT_CONFIG_CHANGE, tt.text); err != nil {
				t.Fatal(err)
			}
			feed.Flush()
			if got := len(out.entries) == 1; got != tt.written {
				t.Fatalf("%d entries, want written=%v", len(out.entries), tt.written)
			}
			if !tt.written {
				return
			}
			e := out.entries[0]
			if got := values(e, "PRIORITY"); len(got) != 1 || got[0] != tt.priority {
				t.Errorf("PRIORITY %v, want %s", got, tt.priority)
			}
			if got := values(e, "AUDIT_CONTAINER_ID"); got != nil {
				t.Errorf("AUDIT_CONTAINER_ID %v", got)
			}
			if got := values(e, "MESSAGE"); len(got) != 1 || !strings.HasPrefix(got[0], "kernel auditing switched "+tt.name) {
				t.Errorf("MESSAGE %q", got)
			}
		})
	}
}

func TestForwarderQueued(t *testing.T) {
	out := &fakeSender{t: t}
	f := NewForwarder(out, fakeContainers{4: {contid.Chain{4}, "web", ""}}, Config{Queue: 2})
	for i := 0; i < 5; i++ {
		execEvent(t, 4, contid.LiveProcess, f)
	}
	execEvent(t, 4, contid.Unattributed, f)
	f.Close()
	// The writer goroutine has finished: out is ours again.
	if len(out.entries) != 5 {
		t.Fatalf("%d entries, want 5", len(out.entries))
	}
	for _, e := range out.entries {
		if got := values(e, "AUDIT_CONTAINER_ID"); len(got) != 1 || got[0] != "4" {
			t.Errorf("entry AUDIT_CONTAINER_ID %v", got)
		}
	}
	if s := f.Stats(); s.Written != 5 || s.Untagged != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestForwarderLossRateLimit(t *testing.T) {
	out := &fakeSender{t: t}
	f := NewForwarder(out, nil, Config{LossInterval: 10 * time.Second})
	t0 := time.Unix(1700000000, 0)
	f.addLoss(lossWindow{kernel: 3}, t0)
	if len(out.entries) != 1 {
		t.Fatalf("first loss: %d entries, want 1 at once", len(out.entries))
	}
	// Within the interval: summed, not written.
	f.addLoss(lossWindow{reader: 4}, t0.Add(time.Second))
	f.addLoss(lossWindow{write: 1}, t0.Add(2*time.Second))
	f.Tick(t0.Add(9 * time.Second))
	if len(out.entries) != 1 {
		t.Fatalf("within interval: %d entries, want 1", len(out.entries))
	}
	f.Tick(t0.Add(10 * time.Second))
	if len(out.entries) != 2 {
		t.Fatalf("after interval: %d entries, want 2", len(out.entries))
	}
	e := out.entries[1]
	for name, want := range map[string]string{
		"MESSAGE_ID": MessageEventsLost, "AUDIT_LOST_COUNT": "5", "AUDIT_LOST_READER": "4",
		"AUDIT_LOST_WRITE": "1", "AUDIT_LOST_KERNEL": "0", "PRIORITY": "4",
		"AUDIT_LOST_SINCE": t0.Add(time.Second).UTC().Format(time.RFC3339Nano),
	} {
		if got := values(e, name); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Nothing pending: ticks stay quiet.
	f.Tick(t0.Add(time.Hour))
	if len(out.entries) != 2 {
		t.Errorf("idle tick wrote an entry")
	}
}

func TestForwarderLossNeverSilent(t *testing.T) {
	out := &fakeSender{t: t, fail: true}
	f := NewForwarder(out, nil, Config{LossInterval: time.Second})
	execEvent(t, 4, contid.LiveProcess, f)
	if s := f.Stats(); s.WriteFailed != 1 || s.Lost != 1 || s.Written != 0 {
		t.Fatalf("stats after failed write: %+v", s)
	}
	// journald comes back: the pending loss is reported on the next tick.
	out.fail = false
	f.Tick(time.Now().Add(2 * time.Second))
	if len(out.entries) != 1 || values(out.entries[0], "AUDIT_LOST_WRITE")[0] != "1" {
		t.Fatalf("entries after recovery: %q", out.entries)
	}
}

type fakeKernelLog struct {
	types []auparse.AuditMessageType
	texts []string
	err   error
}

func (k *fakeKernelLog) WriteUser(typ auparse.AuditMessageType, text string) error {
	k.types = append(k.types, typ)
	k.texts = append(k.texts, text)
	return k.err
}

// testUUID is a container UUID as the registry draws them.
const testUUID = "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"

func TestRecorder(t *testing.T) {
	tests := []struct {
		name      string
		do        func(*Recorder) error
		typ       auparse.AuditMessageType
		text      string
		messageID string
		fields    map[string]string // journal fields that must be there
	}{
		{"granted", func(r *Recorder) error {
			return r.RecordTag(1234, nil, contid.Chain{4, 2, 1}, nil, contid.Labels{Name: "web", Unit: "web.scope", Manager: "podman", Image: "busybox", ManagerID: "3f2a", UUID: testUUID}, nil)
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=set contid=4,^2,^1 old-contid=-1 opid=1234 vm="web" res=success`, MessageTagGranted,
			map[string]string{"AUDIT_CONTAINER_NAME": "web", "AUDIT_CONTAINER_UNIT": "web.scope", "AUDIT_CONTAINER_MANAGER": "podman",
				"AUDIT_CONTAINER_IMAGE": "busybox", "AUDIT_CONTAINER_MANAGER_ID": "3f2a", "AUDIT_CONTAINER_UUID": testUUID}},
		{"refused", func(r *Recorder) error {
			return r.RecordTag(99, nil, contid.Chain{7}, contid.Chain{5}, contid.Labels{}, errors.New("already tagged"))
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=set contid=7 old-contid=5 opid=99 vm=? res=failed`, MessageTagRefused, nil},
		{"refused before allocation", func(r *Recorder) error {
			return r.RecordTag(99, nil, nil, nil, contid.Labels{Name: "a b"}, errors.New("access denied"))
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=set contid=? old-contid=-1 opid=99 vm=612062 res=failed`, MessageTagRefused, nil},
		{"refused from inside a container", func(r *Recorder) error {
			return r.RecordTag(77, contid.Chain{19, 3}, nil, nil, contid.Labels{}, errors.New("not a descendant"))
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=set contid=? old-contid=-1 opid=77 caller-contid=19,^3 vm=? res=failed`, MessageTagRefused,
			map[string]string{"AUDIT_CALLER_CONTAINER_ID": "19", "AUDIT_CALLER_CONTAINER_CHAIN": "19,^3"}},
		{"create", func(r *Recorder) error {
			return r.RecordCreate(1, contid.Chain{8}, contid.Labels{Name: "db", Unit: "db.service", Manager: "api", UUID: testUUID})
		}, auparse.AUDIT_VIRT_CREATE,
			`virt=contid op=set contid=8 old-contid=-1 opid=1 vm="db" res=success`, MessageContainerCreated,
			map[string]string{"AUDIT_CONTAINER_ID": "8", "AUDIT_CONTAINER_NAME": "db", "AUDIT_CONTAINER_MANAGER": "api", "AUDIT_CONTAINER_UUID": testUUID}},
		{"drop", func(r *Recorder) error {
			return r.RecordDrop(contid.Chain{8}, contid.Labels{Name: "db", Unit: "db.service"})
		}, auparse.AUDIT_VIRT_DESTROY,
			`virt=contid op=drop contid=8 old-contid=-1 opid=0 vm="db" res=success`, MessageContainerExited, nil},
		{"deny", func(r *Recorder) error {
			return r.RecordDenial(contid.Chain{8}, contid.Labels{}, 4321, "bpf_map", 0)
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=deny contid=8 old-contid=-1 opid=4321 vm=? operation="bpf_map" res=failed`, MessageTamperDenied, nil},
		{"deny, labelled", func(r *Recorder) error {
			return r.RecordDenial(contid.Chain{8}, contid.Labels{Name: "db", Manager: "api", UUID: testUUID}, 4321, "kill", 0)
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=deny contid=8 old-contid=-1 opid=4321 vm="db" operation="kill" res=failed`, MessageTamperDenied,
			map[string]string{"AUDIT_CONTAINER_ID": "8", "AUDIT_CONTAINER_NAME": "db", "AUDIT_CONTAINER_MANAGER": "api", "AUDIT_CONTAINER_UUID": testUUID}},
		{"deny, with suppressed", func(r *Recorder) error {
			return r.RecordDenial(contid.Chain{8, 2}, contid.Labels{}, 4321, "kill", 17)
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=deny contid=8,^2 old-contid=-1 opid=4321 vm=? operation="kill" suppressed=17 res=failed`, MessageTamperDenied,
			map[string]string{"AUDIT_CONTAINER_ID": "8", "AUDIT_DENIALS_SUPPRESSED": "17", "AUDIT_OPERATION": "kill"}},
		{"denials suppressed", func(r *Recorder) error {
			return r.RecordDenialsSuppressed(contid.Chain{8}, contid.Labels{Name: "db"}, 940)
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=deny contid=8 old-contid=-1 opid=0 vm="db" suppressed=940 res=failed`, MessageDenialsSuppressed,
			map[string]string{"AUDIT_CONTAINER_ID": "8", "AUDIT_DENIALS_SUPPRESSED": "940", "AUDIT_OP": "deny", "PRIORITY": "4"}},
		{"grant used", func(r *Recorder) error {
			return r.RecordGrantUse(contid.Chain{9, 8}, contid.Labels{Name: "agent"}, 4321, "bpf_prog_load")
		}, auparse.AUDIT_VIRT_MACHINE_ID,
			`virt=contid op=allow contid=9,^8 old-contid=-1 opid=4321 vm="agent" operation="bpf_prog_load" res=success`, MessageGrantUsed,
			map[string]string{"AUDIT_CONTAINER_ID": "9", "AUDIT_OPERATION": "bpf_prog_load", "PRIORITY": "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &fakeKernelLog{}
			out := &fakeSender{t: t}
			if err := tt.do(NewRecorder(k, out)); err != nil {
				t.Fatal(err)
			}
			if len(k.texts) != 1 || k.types[0] != tt.typ || k.texts[0] != tt.text {
				t.Errorf("kernel record %v %q, want %v %q", k.types, k.texts, tt.typ, tt.text)
			}
			if len(out.entries) != 1 {
				t.Fatalf("%d journal entries", len(out.entries))
			}
			if got := values(out.entries[0], "MESSAGE_ID"); len(got) != 1 || got[0] != tt.messageID {
				t.Errorf("MESSAGE_ID %v, want %s", got, tt.messageID)
			}
			if got := values(out.entries[0], "SYSLOG_FACILITY"); len(got) != 1 || got[0] != "13" {
				t.Errorf("SYSLOG_FACILITY %v, want 13 (the trail's)", got)
			}
			for field, want := range tt.fields {
				if got := values(out.entries[0], field); len(got) != 1 || got[0] != want {
					t.Errorf("%s %v, want %s", field, got, want)
				}
			}
			if _, ok := tt.fields["AUDIT_CALLER_CONTAINER_ID"]; !ok && len(values(out.entries[0], "AUDIT_CALLER_CONTAINER_ID")) != 0 {
				t.Errorf("AUDIT_CALLER_CONTAINER_ID set for a caller outside any container")
			}
		})
	}
}

func TestRecorderOneLogFailing(t *testing.T) {
	k := &fakeKernelLog{err: errors.New("netlink down")}
	out := &fakeSender{t: t}
	err := NewRecorder(k, out).RecordDrop(contid.Chain{3}, contid.Labels{})
	if err == nil {
		t.Fatal("kernel failure not reported")
	}
	if len(out.entries) != 1 {
		t.Errorf("journal copy skipped because the kernel log failed")
	}
}

// TestCatalog keeps catalog.go and units/contid.catalog in step: every
// MESSAGE_ID has an entry, every entry is one of ours, and each entry
// only references fields the code writes.
func TestCatalog(t *testing.T) {
	data, err := os.ReadFile("../units/contid.catalog")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{
		MessageTagGranted: true, MessageTagRefused: true, MessageContainerCreated: true,
		MessageContainerExited: true, MessageTamperDenied: true, MessageEventsLost: true,
		MessageAuditGap: true, MessageGrantUsed: true, MessageDenialsSuppressed: true,
	}
	if len(ids) != 9 {
		t.Fatal("duplicate MESSAGE_ID constants")
	}
	found := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^-- ([0-9a-f]{32})$`).FindAllStringSubmatch(string(data), -1) {
		if !ids[m[1]] {
			t.Errorf("catalog entry %s has no constant", m[1])
		}
		found[m[1]] = true
	}
	for id := range ids {
		if !found[id] {
			t.Errorf("MESSAGE_ID %s has no catalog entry", id)
		}
	}
	written := map[string]bool{
		"AUDIT_CONTAINER_ID": true, "AUDIT_CONTAINER_CHAIN": true, "AUDIT_CONTAINER_NAME": true,
		"AUDIT_CONTAINER_UNIT": true, "AUDIT_CONTAINER_UUID": true, "AUDIT_OPID": true, "AUDIT_ERROR": true, "AUDIT_OPERATION": true,
		"AUDIT_DENIALS_SUPPRESSED": true,
		"AUDIT_LOST_COUNT":         true, "AUDIT_LOST_SINCE": true, "AUDIT_LOST_KERNEL": true,
		"AUDIT_LOST_READER": true, "AUDIT_LOST_WRITE": true, "AUDIT_LOST_STOPPED": true,
		"AUDIT_GAP_COUNT": true, "AUDIT_GAP_AFTER": true, "AUDIT_GAP_BEFORE": true,
		"AUDIT_GAP_STOPPED": true, "AUDIT_GAP_RESUMED": true,
	}
	for _, m := range regexp.MustCompile(`@([A-Z_]+)@`).FindAllStringSubmatch(string(data), -1) {
		if !written[m[1]] {
			t.Errorf("catalog references @%s@, which contid never writes", m[1])
		}
	}
}

// TestCatalogCompiles runs journalctl's own catalog compiler over the file
// in a private root, as packaging would, and checks every MESSAGE_ID is
// listed.
func TestCatalogCompiles(t *testing.T) {
	testenv.RequireCommand(t, "journalctl")
	root := t.TempDir()
	dir := filepath.Join(root, "usr/lib/systemd/catalog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../units/contid.catalog")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "contid.catalog"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("journalctl", "--root="+root, "--update-catalog").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --update-catalog: %v: %s", err, out)
	}
	out, err := exec.Command("journalctl", "--root="+root, "--list-catalog").Output()
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v", err)
	}
	for _, id := range []string{MessageTagGranted, MessageTagRefused, MessageContainerCreated,
		MessageContainerExited, MessageTamperDenied, MessageEventsLost} {
		if !strings.Contains(string(out), id+" contid: ") {
			t.Errorf("compiled catalog lacks %s:\n%s", id, out)
		}
	}
}

func BenchmarkForwarderEntry(b *testing.B) {
	f := NewForwarder(discard{}, fakeContainers{4: {contid.Chain{4, 2, 1}, "web", "web.scope"}}, Config{})
	// The event only lives during the handler call, so the loop runs
	// inside it.
	feedExec(b, attributor{id: 4, how: contid.LiveProcess}, benchHandler(func(ev *audit.Event) {
		b.ReportAllocs()
		for b.Loop() {
			f.HandleEvent(ev)
		}
	}))
	if f.Stats().Written == 0 {
		b.Fatal("nothing written")
	}
}

type benchHandler func(*audit.Event)

func (h benchHandler) HandleEvent(ev *audit.Event)     { h(ev) }
func (benchHandler) HandleLoss(audit.LossKind, uint64) {}
func (benchHandler) Tick(time.Time)                    {}

type discard struct{}

func (discard) Send(*Entry) error { return nil }

// TestForwarderLossKeptAcrossKill: a forwarder killed with losses
// batched for its loss interval leaves them in its keeper (the audit
// spool), and the next forwarder given the keeper writes them, with
// their kinds and since when, and counts them. The control, without a
// keeper, leaves the successor nothing to write.
func TestForwarderLossKeptAcrossKill(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep bool
	}{
		{"kept", true},
		{"control-not-kept", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := audit.NewSpool(0)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			cfg := Config{LossInterval: 10 * time.Second}
			if tc.keep {
				cfg.Unreported = sp
			}
			out := &fakeSender{t: t}
			killed := NewForwarder(out, nil, cfg)
			t0 := time.Unix(1700000000, 0)
			killed.addLoss(lossWindow{reader: 1}, t0)
			// Batched behind the first entry, then the process dies.
			killed.addLoss(lossWindow{reader: 7000}, t0.Add(time.Second))
			killed.addLoss(lossWindow{kernel: 3}, t0.Add(2*time.Second))
			if len(out.entries) != 1 {
				t.Fatalf("%d entries before the kill, want 1", len(out.entries))
			}
			next := &fakeSender{t: t}
			f := NewForwarder(next, nil, cfg)
			f.Tick(t0.Add(3 * time.Second))
			if !tc.keep {
				if len(next.entries) != 0 || f.Stats().Lost != 0 {
					t.Fatalf("control: the successor wrote %d entries, counted %d", len(next.entries), f.Stats().Lost)
				}
				return
			}
			if len(next.entries) != 1 {
				t.Fatalf("the successor wrote %d entries, want 1", len(next.entries))
			}
			for name, want := range map[string]string{
				"AUDIT_LOST_COUNT": "7003", "AUDIT_LOST_READER": "7000", "AUDIT_LOST_KERNEL": "3",
				"AUDIT_LOST_SINCE": t0.Add(time.Second).UTC().Format(time.RFC3339Nano),
			} {
				if got := values(next.entries[0], name); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if s := f.Stats(); s.Lost != 7003 || s.LostReader != 7000 || s.LostKernel != 3 {
				t.Errorf("successor stats %+v", s)
			}
			// Written: the keeper is empty, and a third forwarder has
			// nothing to write.
			third := &fakeSender{t: t}
			NewForwarder(third, nil, cfg).Tick(t0.Add(4 * time.Second))
			if len(third.entries) != 0 {
				t.Errorf("written twice: %d entries", len(third.entries))
			}
		})
	}
}
