package journal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/kernel/audit"
)

// uploadOutageEnv sets how long TestUploadToCollector keeps the
// collector down. Under make check (CONTID_TEST_REQUIRE_ALL=1) the
// default is 30 s, long enough for upload's restarts to pile up;
// elsewhere a few seconds.
const uploadOutageEnv = "CONTID_TEST_UPLOAD_OUTAGE"

func uploadOutage(t *testing.T) time.Duration {
	t.Helper()
	if s := os.Getenv(uploadOutageEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", uploadOutageEnv, s, err)
		}
		return d
	}
	if os.Getenv(testenv.RequireAllEnv) == "1" {
		return 30 * time.Second
	}
	return 3 * time.Second
}

// TestUploadToCollector ships contid's entries the way users collect
// journals from many hosts: the forwarder writes through a real
// journald (from a process journald places in contidd.service, as it
// does the daemon), systemd-journal-upload sends the journal over HTTPS
// to systemd-journal-remote with --split-mode=host, and contidctl events
// --directory --machine finds them there with the trusted match. A
// process outside the unit forges an entry on the sending host: it
// travels to the collector too, and the match leaves it out (the
// control finds it without the match). What the match cannot tell is
// the sending host: its root uploads an entry claiming another host's
// machine ID and contidd's unit, and events --machine finds it; only the
// file it is filed in names the sender. Then the collector goes away
// while entries keep coming; upload fails, is restarted, and once the
// collector is back resumes from its saved cursor: every entry arrives,
// and events --directory shows each once.
func TestUploadToCollector(t *testing.T) {
	testenv.RequireJournalRemote(t)
	testenv.RequireCommand(t, "nsenter", "logger")
	outage := uploadOutage(t)
	j := testenv.StartJournald(t)
	ctl := buildContidctl(t)
	outside := enterUnitCgroup(t, "contidd.service")

	w, err := NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id := contid.ID(1_000_000 + rand.IntN(1_000_000))
	f := NewForwarder(w, fakeContainers{id: {contid.Chain{id}, "shipped", ""}}, Config{})
	serial := 1000
	write := func() {
		t.Helper()
		feedExecSerial(t, attributor{id: id, how: contid.LiveProcess}, f, serial)
		serial++
	}

	certs := testenv.NewTLS(t, "sender")
	r := testenv.StartJournalRemote(t, certs)
	t.Logf("collector checks client certificates: %v", r.ChecksClients)
	const restartDelay = time.Second
	u := testenv.StartJournalUpload(t, r, certs, "sender", j.Dir, restartDelay)
	logs := func() string {
		return fmt.Sprintf("journal-remote:\n%s\njournal-upload:\n%s", r.Log(), u.Log())
	}

	const before = 50
	for range before {
		write()
	}
	forge := exec.Command("nsenter", "--mount=/proc/"+strconv.Itoa(j.PID())+"/ns/mnt", "logger", "--journald")
	forge.Stdin = strings.NewReader(fmt.Sprintf("MESSAGE=forged\nSYSLOG_IDENTIFIER=contidd\nAUDIT_CONTAINER_ID=%d\nAUDIT_EVENT_ID=1\n", id))
	forge.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: outside}
	if out, err := forge.CombinedOutput(); err != nil {
		t.Fatalf("forging an entry: %v: %s", err, out)
	}
	local := j.Query(t, "AUDIT_CONTAINER_ID="+strconv.Itoa(int(id)), "_SYSTEMD_UNIT=contidd.service")
	if len(local) != before {
		t.Fatalf("%d entries in the sending host's journal from contidd.service, want %d", len(local), before)
	}
	machine := local[0].Get("_MACHINE_ID")

	idMatch := "AUDIT_CONTAINER_ID=" + strconv.Itoa(int(id))
	if got := waitCollected(t, r.Dir, before+1, idMatch); total(got) != before+1 || len(got) != before+1 {
		t.Fatalf("control: the collector holds %d entries of container %d, want %d (contidd's and the forgery)\n%s", total(got), id, before+1, logs())
	}
	files, _ := filepath.Glob(filepath.Join(r.Dir, "remote-*.journal"))
	if len(files) != 1 {
		t.Fatalf("collector files %v, want one for the one sending host", files)
	}
	t.Logf("the sender's entries are filed in %s", filepath.Base(files[0]))

	events := func(machine string) map[string]int {
		t.Helper()
		cmd := exec.Command(ctl, "events", strconv.Itoa(int(id)), "--directory="+r.Dir, "--machine="+machine, "--no-pager", "-o", "json")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok && len(out) == 0 && ee.ExitCode() == 1 {
			// journalctl of systemd 252 exits 1 when no file has a match.
			return nil
		}
		if err != nil {
			t.Fatalf("contidctl %v: %v: %s", cmd.Args[1:], err, out)
		}
		ids, err := eventIDs(out, "_SYSTEMD_UNIT", "contidd.service", "_MACHINE_ID", strings.ToLower(machine))
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	tests := []struct {
		name    string
		machine string
		n       int
	}{
		{"the sending host", machine, before},
		{"the sending host, upper case", strings.ToUpper(machine), before},
		{"another host", strings.Repeat("0", 31) + "1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := events(tt.machine)
			if total(got) != tt.n || len(got) != tt.n {
				t.Fatalf("events --machine=%s found %d entries (%d distinct), want %d", tt.machine, total(got), len(got), tt.n)
			}
			if got["1"] != 0 {
				t.Fatal("events listed the forged entry")
			}
		})
	}

	// What the match cannot tell: root on the sending host makes a
	// journal file with contidd's unit and another host's machine ID,
	// and uploads it. It arrives as made, and --machine names the other
	// host; only the file it is filed in names the sender.
	t.Run("forged by the sending host's root", func(t *testing.T) {
		other := fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
		file := filepath.Join(t.TempDir(), "forged.journal")
		testenv.WriteJournalFile(t, file, fmt.Sprintf("__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=1\n"+
			"_BOOT_ID=%016x%016x\n_MACHINE_ID=%s\n_SYSTEMD_UNIT=contidd.service\n_UID=0\n"+
			"SYSLOG_IDENTIFIER=contidd\nMESSAGE=forged\nAUDIT_CONTAINER_ID=%d\nAUDIT_EVENT_ID=2\n\n",
			time.Now().UnixMicro(), rand.Uint64(), rand.Uint64(), other, id))
		testenv.UploadFile(t, r, certs, "sender", file)
		got := waitCollected(t, r.Dir, 1, idMatch, "_MACHINE_ID="+other)
		if len(got) != 1 || got["2"] != 1 {
			t.Fatalf("the upload claiming machine %s: %v on the collector, want AUDIT_EVENT_ID 2 once\n%s", other, got, logs())
		}
		if got := events(other); got["2"] != 1 {
			t.Fatalf("events --machine=%s found %v, want the forged entry: the match should not be able to tell", other, got)
		}
		out, err := exec.Command("journalctl", "--file="+files[0], "--no-pager", "-o", "json", "_MACHINE_ID="+other).Output()
		if err != nil {
			t.Fatalf("journalctl --file=%s: %v", files[0], err)
		}
		if ids, err := eventIDs(out); err != nil || ids["2"] != 1 {
			t.Fatalf("the forged entry is not in the sender's file %s: %v %v", files[0], ids, err)
		}
	})

	// The outage: entries keep coming at about 50/s while the collector
	// is down, and for a while after it is back.
	r.Stop()
	startsAtStop := u.StartCount()
	const interval = 20 * time.Millisecond
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(interval) {
		write()
	}
	r.Start()
	for end := time.Now().Add(2 * restartDelay); time.Now().Before(end); time.Sleep(interval) {
		write()
	}
	want := serial - 1000
	t.Logf("collector down for %v; %d entries written in all; upload started %d times", outage, want, u.StartCount())
	if u.StartCount() <= startsAtStop {
		t.Errorf("upload was not restarted during the outage: it never noticed the collector was gone\n%s", logs())
	}
	j.Sync(t)
	got := waitCollected(t, r.Dir, want, idMatch, "_SYSTEMD_UNIT=contidd.service", "_MACHINE_ID="+machine)
	var missing, dup []int
	for s := 1000; s < serial; s++ {
		switch n := got[strconv.Itoa(s)]; {
		case n == 0:
			missing = append(missing, s)
		case n > 1:
			dup = append(dup, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("after the outage the collector holds %d entries of %d written: missing %v\n%s",
			total(got), want, missing, logs())
	}
	// A collector stopped in the middle of a request has stored what
	// upload then sends again; the files may hold it twice, and the
	// query folds it.
	if len(dup) > 0 {
		t.Logf("the collector's files hold %d entries twice (AUDIT_EVENT_ID %v): upload resent them", len(dup), dup)
	}
	shown := events(machine)
	var twice []int
	for s := 1000; s < serial; s++ {
		if shown[strconv.Itoa(s)] > 1 {
			twice = append(twice, s)
		}
	}
	if total(shown) != want || len(shown) != want || len(twice) > 0 {
		t.Fatalf("events --machine shows %d entries (%d distinct) after the outage, want %d, each once (more than once: %v)",
			total(shown), len(shown), want, twice)
	}
}

// feedExecSerial is feedExec with the audit serial given, so that each
// entry carries its own AUDIT_EVENT_ID.
func feedExecSerial(t testing.TB, a audit.Attributor, h audit.Handler, serial int) {
	t.Helper()
	feed, err := audit.NewFeed(a, h)
	if err != nil {
		t.Fatal(err)
	}
	stamp := fmt.Sprintf("audit(1700000000.123:%d): ", serial)
	for _, r := range []struct {
		typ  auparse.AuditMessageType
		text string
	}{
		{auparse.AUDIT_SYSCALL, `arch=c000003e syscall=59 success=yes exit=0 a0=55d0c8a0 a1=55d0c8b0 a2=7ffd a3=0 items=1 ppid=100 pid=1234 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="id" exe="/usr/bin/id" subj=unconfined key="contid"`},
		{auparse.AUDIT_EXECVE, `argc=1 a0="id"`},
		{auparse.AUDIT_PROCTITLE, `proctitle=6964`},
	} {
		if err := feed.Push(r.typ, stamp+r.text); err != nil {
			t.Fatal(err)
		}
	}
	feed.Flush()
}

// enterUnitCgroup moves the test process into a cgroup named after a
// unit, below a slice of its own, so that journald stamps the entries it
// sends with _SYSTEMD_UNIT=unit, as it does contidd's. It returns a
// descriptor of the cgroup the process came from, for starting
// processes outside the unit, and moves the process back when the test
// ends.
func enterUnitCgroup(t *testing.T, unit string) int {
	t.Helper()
	root, err := kernel.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var orig string
	for _, line := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			orig = filepath.Join(root, p)
		}
	}
	if orig == "" {
		t.Fatalf("no cgroup2 line in /proc/self/cgroup: %q", self)
	}
	slice := filepath.Join(root, fmt.Sprintf("contid-test-%d.slice", os.Getpid()))
	cg := filepath.Join(slice, unit)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(orig, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), pid, 0); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this one after those of the processes
	// started from inside the unit, which must be gone before rmdir.
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("moving back to %s: %v", orig, err)
		}
		syscall.Close(fd)
		for _, d := range []string{cg, slice} {
			if err := os.Remove(d); err != nil {
				t.Errorf("removing the test cgroup: %v", err)
			}
		}
	})
	return fd
}

// buildContidctl builds contidctl for the test to run as a user would.
func buildContidctl(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gobin, err := exec.LookPath("go")
	if err != nil {
		// Root's PATH under make check may not hold Go's own bin.
		gobin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(gobin, "build", "-o", dir, "github.com/contid/contid/cmd/contidctl").CombinedOutput()
	if err != nil {
		t.Fatalf("building contidctl: %v\n%s", err, out)
	}
	return filepath.Join(dir, "contidctl")
}

// waitCollected polls the collector's directory until it holds n
// distinct AUDIT_EVENT_IDs among the entries matching, or 60 s pass, and
// returns how many times each occurs. upload sends in journal order, so
// a duplicate of an earlier entry arrives before the last new one.
func waitCollected(t *testing.T, dir string, n int, matches ...string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		args := append([]string{"--directory=" + dir, "--no-pager", "-o", "json", "--output-fields=AUDIT_EVENT_ID"}, matches...)
		out, err := exec.Command("journalctl", args...).Output()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && len(out) == 0 {
			err = nil
		}
		if err != nil {
			t.Fatalf("journalctl %v: %v", args, err)
		}
		got, err := eventIDs(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventIDs counts the AUDIT_EVENT_IDs in journalctl's JSON output; each
// entry must also carry the given field and value pairs.
func eventIDs(out []byte, want ...string) (map[string]int, error) {
	ids := map[string]int{}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("journalctl output %q: %w", line, err)
		}
		for i := 0; i+1 < len(want); i += 2 {
			if e[want[i]] != want[i+1] {
				return nil, fmt.Errorf("entry with %s=%v, want %s: %s", want[i], e[want[i]], want[i+1], line)
			}
		}
		s, _ := e["AUDIT_EVENT_ID"].(string)
		ids[s]++
	}
	return ids, nil
}

func total(ids map[string]int) int {
	n := 0
	for _, c := range ids {
		n += c
	}
	return n
}
