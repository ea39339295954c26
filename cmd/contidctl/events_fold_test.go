package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// foldEntry is one of contidd's event entries as the sending host's
// journald stores it, in the export format journal-remote takes. Its
// MESSAGE holds a newline, so it goes in the binary field form.
type foldEntry struct {
	boot          string
	realtime, mon uint64
	event         int
	message       string
}

func (e foldEntry) export() string {
	var b strings.Builder
	fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_MACHINE_ID=%s\n_HOSTNAME=host-a\n"+
		"_SYSTEMD_UNIT=contidd.service\nSYSLOG_IDENTIFIER=contidd\nAUDIT_CONTAINER_ID=42\nAUDIT_CONTAINER_UUID=%s\nAUDIT_EVENT_ID=%d\n",
		e.realtime, e.mon, e.boot, hostA, uuid1, e.event)
	var size [8]byte
	binary.LittleEndian.PutUint64(size[:], uint64(len(e.message)))
	b.WriteString("MESSAGE\n")
	b.Write(size[:])
	b.WriteString(e.message + "\n\n")
	return b.String()
}

// writeJournalFiles writes each file's entries into DIR/NAME with the
// real systemd-journal-remote, as a collector would have stored them.
func writeJournalFiles(t *testing.T, dir string, files map[string][]foldEntry) {
	t.Helper()
	for name, entries := range files {
		var export strings.Builder
		for _, e := range entries {
			export.WriteString(e.export())
		}
		cmd := exec.Command(journalRemote, "--output="+filepath.Join(dir, name), "-")
		cmd.Stdin = strings.NewReader(export.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("journal-remote: %v: %s", err, out)
		}
	}
}

// The copy's address, which the journal that holds it assigns: the
// cursor in export output, and in verbose output's first line.
var cursorField = regexp.MustCompile(`(?m)^__CURSOR=.*\n|^(\S.*) \[s=[^]]*\]$`)

// asPrinted is journalctl's output less what differs between two
// journals holding the same entries: the cursors, and the order of an
// entry's fields (that of the file's objects) in the formats that list
// them. Entries stay in the order printed.
func asPrinted(format, s string) string {
	switch format {
	case "json":
		var out strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				return s
			}
			delete(e, "__CURSOR")
			b, _ := json.Marshal(e) // in key order
			out.Write(append(b, '\n'))
		}
		return out.String()
	case "export", "verbose":
		// An entry: up to a blank line (export), or a line that is
		// not indented and the indented ones after it (verbose).
		var entries [][]string
		for _, line := range strings.Split(cursorField.ReplaceAllString(s, "$1"), "\n") {
			if len(entries) == 0 || format == "export" && line == "" ||
				format == "verbose" && line != "" && line[0] != ' ' && line[0] != '\t' {
				entries = append(entries, nil)
			}
			entries[len(entries)-1] = append(entries[len(entries)-1], line)
		}
		var out strings.Builder
		for _, e := range entries {
			slices.Sort(e)
			out.WriteString(strings.Join(e, "\n") + "\n--\n")
		}
		return out.String()
	}
	return s
}

// After a collector outage journal-upload sends again what the collector
// had stored: events --directory shows that entry once, in each output
// format exactly as journalctl shows the files that hold it once, and
// fleet counts it once. Entries that differ from it only in a timestamp,
// one field or the boot stay apart. The control: journalctl -D on the
// same files shows the repeat.
func TestEventsDirectoryFolds(t *testing.T) {
	if _, err := os.Stat(journalRemote); err != nil {
		t.Fatalf("%s: %v (`make deps` installs systemd-journal-remote)", journalRemote, err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Fatal(err)
	}
	const (
		t0    = 1_700_000_000_000_000
		boot1 = "0123456789abcdef0123456789abcdef"
		boot2 = "fedcba9876543210fedcba9876543210"
	)
	first := foldEntry{boot1, t0, 1_000, 7, "exec /bin/true"}
	resent := foldEntry{boot1, t0 + 1_000_000, 2_000, 8, "exec /bin/sh\n-c true"}
	laterTwin := first // the same event text, later
	laterTwin.realtime, laterTwin.mon = t0+2_000_000, 3_000
	fieldTwin := resent // the same instant, another event
	fieldTwin.event = 9
	bootTwin := first // the same, in another boot
	bootTwin.boot = boot2

	// The collector's files: the resent entry stored again after what
	// came in between; the boot twin in a second file.
	collector, want := t.TempDir(), t.TempDir()
	writeJournalFiles(t, collector, map[string][]foldEntry{
		"remote-127.0.0.1.journal": {first, resent, laterTwin, fieldTwin, resent},
		"remote-127.0.0.2.journal": {bootTwin},
	})
	writeJournalFiles(t, want, map[string][]foldEntry{
		"remote-127.0.0.1.journal": {first, resent, laterTwin, fieldTwin},
		"remote-127.0.0.2.journal": {bootTwin},
	})
	const distinct = 5
	env := []string{"TZ=UTC", "SYSTEMD_COLORS=0"}
	journalctl := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("journalctl", append([]string{"--directory=" + dir, "--no-pager",
			"AUDIT_CONTAINER_UUID=" + uuid1, "_SYSTEMD_UNIT=contidd.service"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("journalctl %v: %v", args, err)
		}
		return string(out)
	}

	if n := strings.Count(journalctl(collector, "-o", "json"), "\n"); n != distinct+1 {
		t.Fatalf("control: journalctl -D on the collector's files shows %d entries, want %d (the resent one twice)", n, distinct+1)
	}

	tests := []struct {
		name, format string
		args         []string // of both contidctl events and journalctl
		// repeat: whether the control, journalctl on the collector's
		// files, shows the repeat (the last 3 hold it: it was stored
		// last).
		repeat bool
	}{
		{"short", "short", []string{"-o", "short"}, true},
		{"short-monotonic", "short", []string{"-o", "short-monotonic"}, true},
		{"json", "json", []string{"-o", "json"}, true},
		{"export", "export", []string{"-o", "export"}, true},
		{"verbose", "verbose", []string{"-o", "verbose"}, true},
		{"cat", "cat", []string{"-o", "cat"}, true},
		{"the default format", "short", nil, true},
		{"the last 3, newest first", "json", []string{"-n", "3", "-r", "-o", "json"}, true},
		{"a window", "json", []string{"--since=@1700000001", "--until=@1700000002", "-o", "json"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"events", "--uuid=" + uuid1, "--directory=" + collector, "--no-pager"}, tt.args...)
			out, errOut, code := runBinary(t, env, args...)
			if code != 0 {
				t.Fatalf("contidctl %v: exit %d: %s", args, code, errOut)
			}
			wantOut := asPrinted(tt.format, journalctl(want, tt.args...))
			if got := asPrinted(tt.format, out); got != wantOut {
				t.Fatalf("contidctl %v:\n%s\nwant, as journalctl shows the files without the repeat:\n%s", args, got, wantOut)
			}
			if raw := asPrinted(tt.format, journalctl(collector, tt.args...)); (raw != wantOut) != tt.repeat {
				t.Fatalf("control: journalctl -D on the collector's files shows the repeat: %v, want %v:\n%s", !tt.repeat, tt.repeat, raw)
			}
		})
	}

	// Each distinct entry once, by the fields that tell events apart.
	out, errOut, code := runBinary(t, env, "events", "--uuid="+uuid1, "--directory="+collector, "--json")
	if code != 0 {
		t.Fatalf("events --json: exit %d: %s", code, errOut)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		seen[fmt.Sprint(e["_BOOT_ID"], e["__REALTIME_TIMESTAMP"], e["__MONOTONIC_TIMESTAMP"], e["AUDIT_EVENT_ID"])]++
	}
	if len(seen) != distinct {
		t.Fatalf("events --json: %d distinct entries %v, want %d", len(seen), seen, distinct)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("events --json: %s %d times", k, n)
		}
	}

	// fleet: the resent entry counts once; the twins count.
	for _, c := range []struct {
		dir  string
		want uint64
	}{{want, distinct}, {collector, distinct}} {
		out, errOut, code := runBinary(t, env, "fleet", "--directory="+c.dir, "--json=short")
		var rows []struct {
			Events uint64 `json:"events"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Events != c.want {
			t.Fatalf("fleet --directory=%s: exit %d, %s%s; want one row of %d events", c.dir, code, out, errOut, c.want)
		}
	}

	// --follow cannot fold: refused, not followed unfolded.
	if out, errOut, code := runBinary(t, env, "events", "--uuid="+uuid1, "--directory="+collector, "-f"); code != 2 || out != "" ||
		!strings.Contains(errOut, "--follow cannot be given with --directory") {
		t.Fatalf("events --directory -f: exit %d, %q, %q; want a usage error", code, out, errOut)
	}
}
