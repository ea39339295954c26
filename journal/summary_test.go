package journal

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel/audit"
)

type rawRecord struct {
	typ  auparse.AuditMessageType
	text string
}

// summaryOf pushes one event's records through a real audit.Feed into a
// forwarder that names UIDs from passwd, and returns the entry's MESSAGE.
func summaryOf(t *testing.T, passwd string, records []rawRecord) string {
	t.Helper()
	out := &fakeSender{t: t}
	f := NewForwarder(out, fakeContainers{4: {contid.Chain{4}, "web", "web.scope"}}, Config{Passwd: passwd})
	feed, err := audit.NewFeed(attributor{id: 4, how: contid.LiveProcess}, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := feed.Push(r.typ, r.text); err != nil {
			t.Fatal(err)
		}
	}
	feed.Flush()
	if len(out.entries) != 1 {
		t.Fatalf("%d entries, want 1", len(out.entries))
	}
	return values(out.entries[0], "MESSAGE")[0]
}

func writePasswd(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "passwd")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func syscallRecord(nr int, success string, exit int, uid, euid int, exe string) rawRecord {
	return rawRecord{auparse.AUDIT_SYSCALL, "audit(1700000000.123:77): arch=c000003e syscall=" + strconv.Itoa(nr) +
		" success=" + success + " exit=" + strconv.Itoa(exit) + " a0=1 a1=2 a2=3 a3=0 items=1 ppid=100 pid=1234 auid=4294967295 uid=" + strconv.Itoa(uid) +
		" gid=0 euid=" + strconv.Itoa(euid) + " suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"sh\" exe=\"" + exe + "\" key=\"contid\""}
}

func rec(typ auparse.AuditMessageType, body string) rawRecord {
	return rawRecord{typ, "audit(1700000000.123:77): " + body}
}

func TestSummaryReadsLikeAusearch(t *testing.T) {
	passwd := writePasswd(t, t.TempDir(), "root:x:0:0:root:/root:/bin/sh\n# a comment\nnobody:x:65534:65534::/:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n")
	unixSock := hex.EncodeToString(append([]byte{1, 0}, []byte("/run/x.sock\x00\x00")...))
	abstract := hex.EncodeToString(append([]byte{1, 0, 0}, []byte("bus")...))
	inet := "0200005" + "00A000001" + "0000000000000000" // 10.0.0.1:80
	inet6 := "0A0001BB00000000" + "00000000000000000000000000000001" + "00000000"
	for _, tc := range []struct {
		name    string
		records []rawRecord
		want    string
	}{
		{"an exec that ran names the program it ran",
			[]rawRecord{syscallRecord(59, "yes", 0, 0, 0, "/usr/bin/id"),
				rec(auparse.AUDIT_PATH, `item=0 name="/usr/bin/id" nametype=NORMAL`)},
			"container 4 (web): execve /usr/bin/id by pid 1234 uid root res=success"},
		{"a failed exec names the file it tried, not the caller's program, and the error",
			[]rawRecord{syscallRecord(59, "no", -2, 1000, 1000, "/usr/bin/dash"),
				rec(auparse.AUDIT_CWD, `cwd="/home/alice"`),
				rec(auparse.AUDIT_PATH, `item=0 name="/no/such" nametype=UNKNOWN`)},
			"container 4 (web): execve /no/such by pid 1234 uid alice res=failed exit=ENOENT"},
		{"a failed exec with no PATH record names no file at all",
			[]rawRecord{syscallRecord(59, "no", -13, 0, 0, "/usr/bin/dash")},
			"container 4 (web): execve by pid 1234 uid root res=failed exit=EACCES"},
		{"a relative path is made absolute with the CWD",
			[]rawRecord{syscallRecord(257, "no", -13, 65534, 65534, "/usr/bin/cat"),
				rec(auparse.AUDIT_CWD, `cwd="/etc"`),
				rec(auparse.AUDIT_PATH, `item=0 name="shadow" nametype=NORMAL`)},
			"container 4 (web): openat /etc/shadow by pid 1234 uid nobody res=failed exit=EACCES"},
		{"unlink names the file removed, not its directory",
			[]rawRecord{syscallRecord(87, "yes", 0, 0, 0, "/usr/bin/rm"),
				rec(auparse.AUDIT_PATH, `item=0 name="/tmp/" nametype=PARENT`),
				rec(auparse.AUDIT_PATH, `item=1 name="/tmp/x" nametype=DELETE`)},
			"container 4 (web): unlink /tmp/x by pid 1234 uid root res=success"},
		{"a signal names the process it went to",
			[]rawRecord{syscallRecord(62, "yes", 0, 0, 0, "/usr/bin/kill"),
				rec(auparse.AUDIT_OBJ_PID, `opid=99 oauid=-1 ouid=0 oses=-1 obj=unconfined ocomm="sleep"`)},
			"container 4 (web): kill pid 99 (sleep) by pid 1234 uid root res=success"},
		{"connect names an IPv4 address",
			[]rawRecord{syscallRecord(42, "no", -111, 0, 0, "/usr/bin/curl"), rec(auparse.AUDIT_SOCKADDR, "saddr="+inet)},
			"container 4 (web): connect inet 10.0.0.1:80 by pid 1234 uid root res=failed exit=ECONNREFUSED"},
		{"connect names an IPv6 address",
			[]rawRecord{syscallRecord(42, "yes", 0, 0, 0, "/usr/bin/curl"), rec(auparse.AUDIT_SOCKADDR, "saddr="+inet6)},
			"container 4 (web): connect inet6 [::1]:443 by pid 1234 uid root res=success"},
		{"connect names a unix socket",
			[]rawRecord{syscallRecord(42, "yes", 0, 0, 0, "/usr/bin/socat"), rec(auparse.AUDIT_SOCKADDR, "saddr="+unixSock)},
			"container 4 (web): connect unix /run/x.sock by pid 1234 uid root res=success"},
		{"connect names an abstract unix socket",
			[]rawRecord{syscallRecord(42, "yes", 0, 0, 0, "/usr/bin/socat"), rec(auparse.AUDIT_SOCKADDR, "saddr="+abstract)},
			"container 4 (web): connect unix @bus by pid 1234 uid root res=success"},
		{"a setuid program shows both users",
			[]rawRecord{syscallRecord(59, "yes", 0, 1000, 0, "/usr/bin/passwd"),
				rec(auparse.AUDIT_PATH, `item=0 name="/usr/bin/passwd" nametype=NORMAL`)},
			"container 4 (web): execve /usr/bin/passwd by pid 1234 uid alice euid root res=success"},
		{"a file name cannot forge a line or drive a terminal",
			[]rawRecord{syscallRecord(59, "no", -2, 0, 0, "/usr/bin/dash"),
				rec(auparse.AUDIT_PATH, "item=0 name="+strings.ToUpper(hex.EncodeToString([]byte("/x\ncontainer 9: execve /bin/ok by pid 1 uid root res=success\x1b[2J\\")))+" nametype=UNKNOWN")},
			`container 4 (web): execve /x\x0acontainer 9: execve /bin/ok by pid 1 uid root res=success\x1b[2J\\ by pid 1234 uid root res=failed exit=ENOENT`},
		{"a UID the host does not name stays a number",
			[]rawRecord{syscallRecord(59, "yes", 0, 101000, 101000, "/usr/bin/id"),
				rec(auparse.AUDIT_PATH, `item=0 name="/usr/bin/id" nametype=NORMAL`)},
			"container 4 (web): execve /usr/bin/id by pid 1234 uid 101000 res=success"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summaryOf(t, passwd, tc.records); got != tc.want {
				t.Errorf("MESSAGE\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestUserNamesFollowThePasswdFile(t *testing.T) {
	dir := t.TempDir()
	passwd := writePasswd(t, dir, "root:x:0:0::/:/bin/sh\n")
	now := time.Unix(1000, 0)
	u := newUserNames(passwd)
	u.now = func() time.Time { return now }
	for _, step := range []struct {
		name    string
		content string // written before the lookup when not empty
		advance time.Duration
		uid     string
		want    string
	}{
		{"a listed UID is named", "", 0, "0", "root"},
		{"an unlisted one is not", "", 0, "1000", "1000"},
		{"a change is not read before the next check", "root:x:0:0::/:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n", time.Second, "1000", "1000"},
		{"and is read at it", "", passwdCheck, "1000", "bob"},
		{"not a number stays as it is", "", 0, "x", "x"},
		{"a file gone names nobody", "-", passwdCheck, "0", "0"},
	} {
		if step.content == "-" {
			os.Remove(passwd)
		} else if step.content != "" {
			writePasswd(t, dir, step.content)
		}
		now = now.Add(step.advance)
		if got := string(u.appendName(nil, step.uid)); got != step.want {
			t.Errorf("%s: uid %s named %q, want %q", step.name, step.uid, got, step.want)
		}
	}
}
