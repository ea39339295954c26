package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// journaldBinary is where Debian installs journald; it is not on PATH.
const journaldBinary = "/lib/systemd/systemd-journald"

// Journald is a private systemd-journald started for one test. Only
// journald lives in its own mount namespace (it insists on binding
// /run/systemd/journal/*); the test reaches its native socket through
// /proc/<pid>/root, so the code under test needs no namespace of its own.
type Journald struct {
	// Socket is the native protocol socket, reachable from the test's
	// mount namespace.
	Socket string
	// Dir is the journal directory to hand to journalctl --directory.
	Dir string
	// MachineID is what journald stamps as _MACHINE_ID: the host's, or
	// the one given with WithMachineID.
	MachineID string

	pid    int
	output *lockedBuffer
}

// lockedBuffer collects journald's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// journaldConf keeps the private journald off the host's consoles and
// kernel log, and disables its rate limit so throughput tests measure
// the code under test rather than journald's policy. An empty Audit=
// matters: journald 252 otherwise switches kernel auditing off when it
// starts, under the feet of every audit test on the machine.
const journaldConf = `[Journal]
Audit=
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
RateLimitBurst=0
`

// JournaldOption changes how StartJournald sets journald up.
type JournaldOption func(*journaldSetup)

type journaldSetup struct {
	machineID string
}

// WithMachineID makes journald read id (32 lower-case hexadecimal
// digits, as in machine-id(5)) as its /etc/machine-id, so that its
// entries carry _MACHINE_ID=id: another host's journal, on this kernel.
// journald reads the file in its own mount namespace, where a file with
// id is bound over it; the host's file is left alone.
func WithMachineID(id string) JournaldOption {
	return func(s *journaldSetup) { s.machineID = id }
}

// NewMachineID draws a random machine ID for WithMachineID.
func NewMachineID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// requireJournald checks for what StartJournald needs.
func requireJournald(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "unshare", "mount", "journalctl")
	if _, err := os.Stat(journaldBinary); err != nil {
		Missing(t, "skipped: %s is not installed (`make deps` installs systemd)", journaldBinary)
	}
	if _, err := os.Stat("/etc/systemd/journald.conf"); err != nil {
		Missing(t, "skipped: /etc/systemd/journald.conf is missing, nothing to bind the test config over")
	}
}

// StartJournald starts a private journald with volatile storage in a temp
// dir and stops it (by PID) when the test ends; should the test process
// die first, the kernel kills it (startTiedToTest). It skips the test
// when root or the programs are missing.
func StartJournald(t testing.TB, opts ...JournaldOption) *Journald {
	t.Helper()
	var setup journaldSetup
	for _, o := range opts {
		o(&setup)
	}
	requireJournald(t)

	tmp := t.TempDir()
	logDir := filepath.Join(tmp, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(tmp, "journald.conf")
	if err := os.WriteFile(conf, []byte(journaldConf), 0o644); err != nil {
		t.Fatal(err)
	}
	var bindMachineID string
	if id := setup.machineID; id != "" {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || strings.Trim(id, "0") == "" {
			t.Fatalf("machine ID %q: want 32 lower-case hexadecimal digits, not all zero", id)
		}
		if _, err := os.Stat("/etc/machine-id"); err != nil {
			Missing(t, "skipped: /etc/machine-id is missing, nothing to bind the test's machine ID over")
		}
		f := filepath.Join(tmp, "machine-id")
		if err := os.WriteFile(f, []byte(id+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
		bindMachineID = fmt.Sprintf("mount --bind %q /etc/machine-id\n", f)
	}
	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run/systemd
mount --bind %q /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mount --bind %q /etc/systemd/journald.conf
%sexec %s`, logDir, conf, bindMachineID, journaldBinary)

	output := &lockedBuffer{}
	// Without --fork, unshare execs in place, so the PID we get is
	// journald's own: that is what we kill and what /proc/<pid>/root
	// resolves through.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	// journald says why it refused or failed to store an entry only in
	// its own log, which would go to the host's kernel log.
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_TARGET=console")
	cmd.Stdout = output
	cmd.Stderr = output
	// Killed with the test process, even one killed outright: it
	// would otherwise hold the host lock it inherits.
	start := startTiedToTest
	if !tieToTest {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		t.Fatalf("starting journald: %v", err)
	}
	j := &Journald{
		Socket: fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", cmd.Process.Pid),
		pid:    cmd.Process.Pid,
		output: output,
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(j.pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(j.pid, syscall.SIGKILL)
			<-exited
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("journald exited early: %s", output.String())
		default:
		}
		if _, err := os.Stat(j.Socket); err == nil {
			if dirs, _ := filepath.Glob(filepath.Join(logDir, "journal", "*")); len(dirs) == 1 {
				// journald names the directory after its machine
				// ID.
				j.Dir, j.MachineID = dirs[0], filepath.Base(dirs[0])
				if setup.machineID != "" && j.MachineID != setup.machineID {
					t.Fatalf("journald took machine ID %s, want %s", j.MachineID, setup.machineID)
				}
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("journald did not come up within 10s: %s", output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID is journald's process ID.
func (j *Journald) PID() int { return j.pid }

// Log is what journald logged about itself so far (its warnings, for
// one, when it could not store an entry).
func (j *Journald) Log() string { return j.output.String() }

// Entry is one journal entry as journalctl -o json prints it: every field
// holds all its values (a field may repeat, e.g. AUDIT_CONTAINER_WITHIN).
type Entry map[string][]string

// Get returns the first value of a field, or "".
func (e Entry) Get(field string) string {
	if v := e[field]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Sync returns once journald has stored every entry sent to its native
// socket before the call. A writer's send returns when the datagram is
// queued, not when journald has read it; under load journald is seconds
// behind, and a count taken at once misses the last entries. journald
// reads the socket in order, so a marker sent after them is stored after
// them too.
func (j *Journald) Sync(t testing.TB) {
	t.Helper()
	if err := j.sync(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func (j *Journald) sync(timeout time.Duration) error {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	marker := "CONTID_TEST_SYNC=" + hex.EncodeToString(id[:])
	c, err := net.Dial("unixgram", j.Socket)
	if err != nil {
		return fmt.Errorf("journald sync: %w", err)
	}
	_, err = c.Write([]byte("MESSAGE=test journal sync\n" + marker + "\n"))
	c.Close()
	if err != nil {
		return fmt.Errorf("journald sync: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		entries, err := j.run("--output-fields=CONTID_TEST_SYNC", marker)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("journald sync: the marker was not stored within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Query runs journalctl --directory with the given FIELD=VALUE matches and
// returns the entries, after a Sync.
func (j *Journald) Query(t testing.TB, matches ...string) []Entry {
	t.Helper()
	entries, err := j.query(matches...)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// Select is Query limited to some fields, for large result sets; it too
// syncs first.
func (j *Journald) Select(t testing.TB, fields []string, matches ...string) []Entry {
	t.Helper()
	entries, err := j.query(append([]string{"--output-fields=" + strings.Join(fields, ",")}, matches...)...)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func (j *Journald) query(matches ...string) ([]Entry, error) {
	if err := j.sync(30 * time.Second); err != nil {
		return nil, err
	}
	return j.run(matches...)
}

func (j *Journald) run(matches ...string) ([]Entry, error) {
	// --all: without it journalctl prints large or binary values as null.
	args := append([]string{"--directory=" + j.Dir, "--no-pager", "--all", "-o", "json"}, matches...)
	out, err := exec.Command("journalctl", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return nil, fmt.Errorf("journalctl %s: %w: %s", strings.Join(args, " "), err, stderr)
	}
	return ParseEntries(out)
}

// ParseEntries reads journalctl's -o json output (one entry a line), as
// a program that runs journalctl for the test prints it.
func ParseEntries(out []byte) ([]Entry, error) {
	var entries []Entry
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("journalctl output %q: %w", line, err)
		}
		e := make(Entry, len(raw))
		for k, v := range raw {
			e[k] = decodeJournalValue(v)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// decodeJournalValue turns journalctl's JSON value forms into strings: a
// string, an array of bytes (binary or non-UTF-8 data), or an array of
// either for a repeated field.
func decodeJournalValue(v json.RawMessage) []string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return []string{s}
	}
	var bytesForm []byte
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		bytesForm = make([]byte, len(nums))
		for i, n := range nums {
			bytesForm[i] = byte(n)
		}
		return []string{string(bytesForm)}
	}
	var many []json.RawMessage
	if json.Unmarshal(v, &many) == nil {
		var out []string
		for _, m := range many {
			out = append(out, decodeJournalValue(m)...)
		}
		return out
	}
	return []string{string(v)}
}

// WaitFor polls until at least n entries match, or the timeout passes; it
// returns what it found either way so the caller can report it.
func (j *Journald) WaitFor(t testing.TB, timeout time.Duration, n int, matches ...string) []Entry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		entries, err := j.run(matches...)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) >= n || time.Now().After(deadline) {
			return entries
		}
		time.Sleep(50 * time.Millisecond)
	}
}
