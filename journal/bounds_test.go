package journal

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel/audit"
)

const boundsHeader = "audit(1700000000.123:777): "

// execveRecords lays args out as the kernel does: records of at most
// about 7,500 bytes, an argument longer than that split into hex pieces
// after an a<n>_len.
func execveRecords(args []string) []string {
	const recordMax = 7500
	var recs []string
	cur := boundsHeader + "argc=" + strconv.Itoa(len(args))
	for i, a := range args {
		var field string
		if len(a) > recordMax/2 {
			field = fmt.Sprintf(" a%d_len=%d", i, len(a))
			recs = append(recs, cur+field)
			cur = boundsHeader
			enc := strings.ToUpper(hex.EncodeToString([]byte(a)))
			for k := 0; len(enc) > 0; k++ {
				n := min(len(enc), recordMax)
				recs = append(recs, fmt.Sprintf("%sa%d[%d]=%s", boundsHeader, i, k, enc[:n]))
				enc = enc[n:]
			}
			continue
		}
		if plainArg([]byte(a)) {
			field = fmt.Sprintf(" a%d=%q", i, a)
		} else {
			// The kernel hex-encodes what it could not quote.
			field = fmt.Sprintf(" a%d=%s", i, strings.ToUpper(hex.EncodeToString([]byte(a))))
		}
		if len(cur)+len(field) > recordMax {
			recs = append(recs, cur)
			cur = boundsHeader
		}
		cur += field
	}
	return append(recs, cur)
}

// feedPadded pushes one execve of args, plus paths PATH records, through
// a real audit.Feed into f.
func feedPadded(t *testing.T, f *Forwarder, args []string, paths int) {
	t.Helper()
	feed, err := audit.NewFeed(attributor{id: 9, how: contid.LiveProcess}, f)
	if err != nil {
		t.Fatal(err)
	}
	push := func(typ auparse.AuditMessageType, text string) {
		if err := feed.Push(typ, text); err != nil {
			t.Fatal(err)
		}
	}
	push(auparse.AUDIT_SYSCALL, boundsHeader+`arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=2 ppid=100 pid=1234 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="echo" exe="/usr/bin/echo" key="pad"`)
	for _, r := range execveRecords(args) {
		push(auparse.AUDIT_EXECVE, r)
	}
	for i := 0; i < paths; i++ {
		push(auparse.AUDIT_PATH, fmt.Sprintf(`%sitem=%d name="/p/%d" inode=1 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`, boundsHeader, i, i))
	}
	feed.Flush()
}

func repeat(n int, s string) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = s
	}
	return a
}

// TestForwarderBoundsEntry: however padded the event, the entry stays
// within journald's field limit, the command line is folded into
// AUDIT_EXECVE_ARGV, and whatever is left out is marked and counted
// exactly.
func TestForwarderBoundsEntry(t *testing.T) {
	huge := strings.Repeat("A", 128<<10-1) // MAX_ARG_STRLEN with its NUL
	tests := []struct {
		name      string
		args      []string
		paths     int
		truncated bool
		argvStart string
	}{
		{"1,100 args", append([]string{"/usr/bin/echo"}, repeat(1100, "x")...), 0, false, "/usr/bin/echo x x "},
		{"100,000 args", append([]string{"/usr/bin/echo"}, repeat(100000, "0123456789")...), 0, true, "/usr/bin/echo 0123456789 "},
		{"1 MiB of arguments", append([]string{"/usr/bin/echo"}, repeat(8, huge)...), 0, true, "/usr/bin/echo AAAA"},
		{"argument with spaces", []string{"/usr/bin/echo", "a b", `q"`, "ü\n"}, 0, false, `/usr/bin/echo "a b" "q\"" "ü\n"`},
		{"1,000 PATH records", []string{"/usr/bin/true"}, 1000, true, "/usr/bin/true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := &fakeSender{t: t}
			f := NewForwarder(out, fakeContainers{9: {contid.Chain{9}, "pad", "pad.scope"}}, Config{})
			feedPadded(t, f, tc.args, tc.paths)
			if len(out.entries) != 1 {
				t.Fatalf("%d entries, want 1", len(out.entries))
			}
			e := out.entries[0]
			if len(e) >= 1024-64 {
				t.Errorf("%d fields: too close to journald's 1,024", len(e))
			}
			if got := values(e, "AUDIT_CONTAINER_ID"); fmt.Sprint(got) != "[9]" {
				t.Errorf("AUDIT_CONTAINER_ID = %v", got)
			}
			if got := values(e, "AUDIT_FIELD_ARGC"); fmt.Sprint(got) != fmt.Sprintf("[%d]", len(tc.args)) {
				t.Errorf("AUDIT_FIELD_ARGC = %v, want %d", got, len(tc.args))
			}
			argv := values(e, "AUDIT_EXECVE_ARGV")
			if len(argv) != 1 || !strings.HasPrefix(argv[0], tc.argvStart) {
				t.Fatalf("AUDIT_EXECVE_ARGV = %.80q, want one starting %q", argv, tc.argvStart)
			}
			if len(argv[0]) > maxArgvBytes+len(TruncationMarker) {
				t.Errorf("AUDIT_EXECVE_ARGV is %d bytes", len(argv[0]))
			}
			for _, fl := range e {
				if len(fl[1]) > maxArgvBytes+len(TruncationMarker) {
					t.Errorf("%s is %d bytes", fl[0], len(fl[1]))
				}
			}
			if n := len(values(e, "AUDIT_FIELD_A0")); n != 2 { // SYSCALL's register and argv[0]
				t.Errorf("%d AUDIT_FIELD_A0, want 2", n)
			}
			st := f.Stats()
			if !tc.truncated {
				if st.Truncated != 0 || values(e, "AUDIT_TRUNCATED_FIELDS") != nil || strings.Contains(argv[0], TruncationMarker) {
					t.Errorf("truncated: stats %+v, entry %v", st, values(e, "AUDIT_TRUNCATED_BYTES"))
				}
				return
			}
			if st.Truncated != 1 || st.Written != 1 {
				t.Errorf("stats %+v, want 1 written, 1 truncated", st)
			}
			cutFields, _ := strconv.ParseUint(strings.Join(values(e, "AUDIT_TRUNCATED_FIELDS"), ""), 10, 64)
			cutBytes, _ := strconv.ParseUint(strings.Join(values(e, "AUDIT_TRUNCATED_BYTES"), ""), 10, 64)
			if cutFields+cutBytes == 0 {
				t.Fatalf("truncated entry without counts: %v", values(e, "AUDIT_TRUNCATED_FIELDS"))
			}
			if tc.paths > 0 {
				// 14 fields per PATH record, minus what fit.
				written := 0
				for _, fl := range e {
					if strings.HasPrefix(fl[0], "AUDIT_FIELD_") {
						written++
					}
				}
				if written != maxAuditFields || uint64(written)+cutFields != uint64(countSourceFields(tc.args, tc.paths)) {
					t.Errorf("%d fields written + %d cut, want %d in all, %d written", written, cutFields, countSourceFields(tc.args, tc.paths), maxAuditFields)
				}
				return
			}
			if !strings.HasSuffix(argv[0], TruncationMarker) {
				t.Errorf("AUDIT_EXECVE_ARGV does not end with the marker: ...%q", argv[0][len(argv[0])-40:])
			}
			// Plain arguments: the bytes kept and the bytes counted as
			// cut add up to the command line.
			kept := strings.ReplaceAll(strings.TrimSuffix(argv[0], TruncationMarker), " ", "")
			total := 0
			for _, a := range tc.args {
				total += len(a)
			}
			if uint64(len(kept))+cutBytes != uint64(total) {
				t.Errorf("kept %d + cut %d bytes, want %d", len(kept), cutBytes, total)
			}
			if a1 := values(e, "AUDIT_FIELD_A1"); tc.args[1] == huge && (len(a1) != 2 || len(a1[1]) != maxValueBytes+len(TruncationMarker)) {
				t.Errorf("AUDIT_FIELD_A1 (argv[1]) not cut to %d bytes and marked", maxValueBytes)
			}
		})
	}
}

// countSourceFields is how many AUDIT_FIELD_* fields the event would have
// without a bound: SYSCALL's 25, argc and each argument, 14 per PATH.
func countSourceFields(args []string, paths int) int {
	return 25 + 1 + min(len(args), maxArgFields) + 14*paths
}
