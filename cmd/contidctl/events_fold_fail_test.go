package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
)

// collectorOf writes n of contidd's entries (and, if big > 0, one more
// whose MESSAGE is big random bytes) into a collector's file.
func collectorOf(t *testing.T, n, big int) string {
	t.Helper()
	var entries []foldEntry
	for i := range n {
		entries = append(entries, foldEntry{"0123456789abcdef0123456789abcdef", uint64(1_700_000_000_000_000 + i*1000),
			uint64(1000 + i*1000), i + 1, fmt.Sprintf("exec /bin/true %d %s", i, strings.Repeat("x", 200))})
	}
	if big > 0 {
		b := make([]byte, big)
		_, _ = rand.Read(b)
		entries = append(entries, foldEntry{"0123456789abcdef0123456789abcdef", uint64(1_700_000_000_000_000 + n*1000),
			uint64(1000 + n*1000), n + 1, string(b)})
	}
	dir := t.TempDir()
	writeJournalFiles(t, dir, map[string][]foldEntry{"remote-127.0.0.1.journal": entries})
	return dir
}

// systemd-journal-remote exits 0 after an entry it could not store (a
// full TMPDIR; an entry larger than the file size it picks for TMPDIR's
// file system), keeping those before it: events checks the folded
// journal holds every entry, and fails rather than show the rest. Here
// TMPDIR is a 16 MB tmpfs, on which journal-remote refuses the last
// entry, 2 MB, as too large. The control: journalctl on the collector
// shows it.
func TestEventsDirectoryFailsWhenAnEntryIsNotStored(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := os.Stat(journalRemote); err != nil {
		t.Fatalf("%s: %v (`make deps` installs systemd-journal-remote)", journalRemote, err)
	}
	collector := collectorOf(t, 3, 2<<20)
	out, err := exec.Command("journalctl", "--directory="+collector, "AUDIT_CONTAINER_UUID="+uuid1, "-o", "cat", "--no-pager").Output()
	if err != nil || strings.Count(string(out), "exec /bin/true") != 3 || len(out) < 2<<20 {
		t.Fatalf("control: journalctl on the collector: %v, %d bytes; want the 3 entries and the large one", err, len(out))
	}

	tmp, self := t.TempDir(), fmt.Sprintf("/proc/%d/exe", os.Getpid())
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"`, tmp,
		self, "events", "--uuid="+uuid1, "--directory="+collector, "--no-pager", "-o", "cat")
	cmd.Env = append(os.Environ(), asContidctl+"=1", "TMPDIR="+tmp)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || !strings.Contains(stderr.String(), "stored 3 of the 4 entries") {
		t.Fatalf("events --directory with a TMPDIR too small for an entry: %v, stdout %d bytes, stderr %q; want exit 1 and that 3 of 4 were stored",
			err, stdout.Len(), stderr.String())
	}
}

// A signal while events folds (seconds on a large collector) stops it
// and the temporary directory is removed, not left holding the entries;
// contidctl exits as a shell reports the signal. journalctl here prints
// one entry and stalls, so the signal comes mid-fold. The control: the
// directory with the folded journal exists before the signal.
func TestEventsDirectorySignalWhileFolding(t *testing.T) {
	if _, err := os.Stat(journalRemote); err != nil {
		t.Fatalf("%s: %v (`make deps` installs systemd-journal-remote)", journalRemote, err)
	}
	one := foldEntry{"0123456789abcdef0123456789abcdef", 1_700_000_000_000_000, 1000, 1, "exec /bin/true"}
	bin, collector := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "one.export"), []byte(one.export()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The journalctl that events folds from stalls; the one that shows
	// the folded file is the real one.
	real, err := exec.LookPath("journalctl")
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ncase \" $* \" in *\" export \"*) cat " + filepath.Join(bin, "one.export") +
		"; exec sleep \"$STALL\";; esac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary by its /proc link: the unprivileged tier runs it
	// from a directory only its builder may search.
	self := fmt.Sprintf("/proc/%d/exe", os.Getpid())
	tests := []struct {
		s syscall.Signal
		// ignored: contidctl starts with s ignored, as under nohup; it
		// stays ignored, and contidctl shows the entry.
		ignored bool
	}{{syscall.SIGINT, false}, {syscall.SIGTERM, false}, {syscall.SIGHUP, false}, {syscall.SIGHUP, true}}
	for _, tt := range tests {
		s := tt.s
		t.Run(fmt.Sprintf("%v ignored %v", s, tt.ignored), func(t *testing.T) {
			tmp := t.TempDir()
			args := []string{self, "events", "--uuid=" + uuid1, "--directory=" + collector, "--no-pager", "-o", "cat"}
			stall := "60"
			if tt.ignored {
				args, stall = append([]string{"sh", "-c", `trap "" HUP; exec "$@"`, "sh"}, args...), "1"
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), asContidctl+"=1", "TMPDIR="+tmp, "PATH="+bin+":"+os.Getenv("PATH"), "STALL="+stall)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			deadline := time.Now().Add(20 * time.Second)
			for {
				m, _ := filepath.Glob(filepath.Join(tmp, "contidctl-events-*", "*.journal"))
				if len(m) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("control: no folded journal in TMPDIR after 20 s")
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = cmd.Process.Signal(s)
			err := cmd.Wait()
			left, _ := os.ReadDir(tmp)
			if tt.ignored {
				if err != nil || stdout.String() != "exec /bin/true\n" || len(left) != 0 {
					t.Fatalf("%v, ignored, while folding: %v, stdout %q, stderr %q, %d left in TMPDIR; want the entry shown", s, err, stdout.String(), stderr.String(), len(left))
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 128+int(s) || len(left) != 0 {
				t.Fatalf("%v while folding: %v, stderr %q, %d left in TMPDIR; want exit %d and nothing left", s, err, stderr.String(), len(left), 128+int(s))
			}
		})
	}
}

// Piped to head or a pager that quits, journalctl dies of SIGPIPE;
// events --directory ends as journalctl alone would (status 141 in a
// shell), with no error of its own. The control: the output was cut.
func TestEventsDirectoryReaderGoesAway(t *testing.T) {
	if _, err := os.Stat(journalRemote); err != nil {
		t.Fatalf("%s: %v (`make deps` installs systemd-journal-remote)", journalRemote, err)
	}
	collector := collectorOf(t, 3000, 0)
	cmd := exec.Command("/proc/self/exe", "events", "--uuid="+uuid1, "--directory="+collector, "--no-pager", "-o", "cat")
	cmd.Env = append(os.Environ(), asContidctl+"=1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	first := make([]byte, 100)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatalf("control: no output: %v", err)
	}
	r.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGPIPE) || stderr.String() != "" {
		t.Fatalf("events --directory | head: %v, stderr %q; want exit 141 and no message", err, stderr.String())
	}
}
