package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// journalRemote writes journal files from the export format; it needs no
// privilege, and the journal-remote tests need it anyway.
const journalRemote = "/lib/systemd/systemd-journal-remote"

// fleet over a real journal file, as a collector holds: journalctl's
// --since and --until include entries at either edge and none beyond,
// and an entry that names a container but was not written by contidd's
// unit is not counted, whatever its fields claim.
func TestFleetJournal(t *testing.T) {
	if _, err := os.Stat(journalRemote); err != nil {
		t.Fatalf("%s: %v (`make deps` installs systemd-journal-remote)", journalRemote, err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Fatal(err)
	}
	const t0 = 1_700_000_000_000_000 // µs; --since=@1700000000
	type entry struct {
		host, uuid, unit, messageID string
		at                          uint64
	}
	contidd := "contidd.service"
	entries := []entry{
		{hostA, uuid1, contidd, "", t0 - 1}, // before --since
		{hostA, uuid1, contidd, tagGranted, t0},
		{hostA, uuid1, contidd, "", t0 + 1_000_000},
		{hostA, uuid1, "evil.service", "", t0 + 1_000_000},
		{hostB, uuid2, contidd, "", t0 + 1_500_000},
		{hostA, uuid1, contidd, "", t0 + 2_000_000},     // at --until
		{hostA, uuid1, contidd, "", t0 + 2_000_000 + 1}, // after it
	}
	var export strings.Builder
	for i, e := range entries {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_MACHINE_ID=%s\n_HOSTNAME=host-%s\n"+
			"_SYSTEMD_UNIT=%s\nMESSAGE=entry %d\nAUDIT_CONTAINER_ID=42\nAUDIT_CONTAINER_UUID=%s\nAUDIT_CONTAINER_NAME=web\n",
			e.at, i+1, e.host, e.host, e.host[:1], e.unit, i, e.uuid)
		if e.messageID != "" {
			fmt.Fprintf(&export, "MESSAGE_ID=%s\n", e.messageID)
		}
		export.WriteString("\n")
	}
	dir := t.TempDir()
	cmd := exec.Command(journalRemote, "--output="+filepath.Join(dir, "remote-127.0.0.1.journal"), "-")
	cmd.Stdin = strings.NewReader(export.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("journal-remote: %v: %s", err, out)
	}

	type row struct {
		Machine string `json:"machine_id"`
		UUID    string `json:"uuid"`
		Events  uint64 `json:"events"`
		Records uint64 `json:"records"`
		First   uint64 `json:"first_seen_usec"`
		Last    uint64 `json:"last_seen_usec"`
	}
	a := row{hostA, uuid1, 2, 1, t0, t0 + 2_000_000}
	b := row{hostB, uuid2, 1, 0, t0 + 1_500_000, t0 + 1_500_000}
	window := []string{"--since=@1700000000", "--until=@1700000002"}
	tests := []struct {
		name string
		args []string
		want []row
	}{
		{"the window, both hosts", window, []row{a, b}},
		{"one host", append([]string{"--machine=" + hostB}, window...), []row{b}},
		{"one UUID", append([]string{"--uuid=" + uuid1}, window...), []row{a}},
		{"a window with no entries: an empty array, exit 0", []string{"--since=@1800000000"}, []row{}},
		{"no window", nil, []row{{hostA, uuid1, 4, 1, t0 - 1, t0 + 2_000_001}, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"fleet", "--directory=" + dir, "--json=short"}, tt.args...)
			out, errOut, code := runBinary(t, nil, args...)
			if code != 0 {
				t.Fatalf("contidctl %v: exit %d: %s", args, code, errOut)
			}
			var got []row
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("contidctl %v: %v: %s", args, err, out)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("contidctl %v:\n%+v\nwant\n%+v", args, got, tt.want)
			}
		})
	}
}
