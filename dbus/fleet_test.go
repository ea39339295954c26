package dbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/registry"
)

// fleetHost is one contid host of TestTwoHostsOverlappingIDs: a contidd
// with its own bus, pins, state and journald, the journald with a
// machine ID of its own.
type fleetHost struct {
	name    string
	e       *env
	j       *testenv.Journald
	d       *daemon
	cg      string // the container's cgroup
	uuid    string
	serials []string // AUDIT_EVENT_ID of each marker exec, in order
}

// Two hosts of a fleet give a container the same 64-bit ID (and name),
// as hosts do: the ID is unique per host only. Each is a real contidd
// with its own private journald, whose entries carry a machine ID of
// their own, and each journal is shipped by systemd-journal-upload to
// one systemd-journal-remote. On the collector, contidctl events
// --uuid finds one host's container, its execs and its tag and create
// records, and none of the other's; the ID with --machine finds the
// same; the ID alone finds both hosts' entries, the collision the
// instance UUID resolves (the control); contidctl fleet sums the
// collector into one row per host, each with the counts and times of
// that host's own journal. Both contidds read the kernel's
// one multicast audit stream, so each sees the other's execs: it has no
// tag for those processes and writes none of them.
//
// Debian 12's journal-remote has no --trust and names a host's file
// after the peer's address: both uploads come from 127.0.0.1 and land in
// one file, so the file cannot tell the hosts apart here; the machine ID
// and the UUID still do.
func TestTwoHostsOverlappingIDs(t *testing.T) {
	const id contid.ID = 4242
	idStr := strconv.FormatUint(uint64(id), 10)
	requireIntegration(t)
	testenv.RequireJournalRemote(t)
	auditRuleSession(t, "-a always,exit -F arch=b64 -S execve -k contid-fleet-"+registry.NewUUID()[:8])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	run := registry.NewUUID()[:8]
	hosts := []*fleetHost{{name: "a"}, {name: "b"}}
	certs := testenv.NewTLS(t, "host-a", "host-b")
	r := testenv.StartJournalRemote(t, certs)
	for _, h := range hosts {
		h.e = newEnv(t, "[Audit]\nSocket=multicast\n")
		h.j = testenv.StartJournald(t, testenv.WithMachineID(testenv.NewMachineID()))
		// journald gives contidd's entries _SYSTEMD_UNIT=contidd.service,
		// which events always matches, from a cgroup so named below a
		// slice.
		slice := fmt.Sprintf("/contid-fleet-%s-%s.slice", run, h.name)
		if err := os.MkdirAll(filepath.Join(h.e.cgRoot, slice, "contidd.service"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeCgroupTree(t, filepath.Join(h.e.cgRoot, slice)) })
		h.d = h.e.startWith(daemonOptions{cgroup: slice + "/contidd.service"}, "--journal-socket", h.j.Socket)
		c := h.e.p2pClient()
		if mi, err := c.Manager(ctx); err != nil || mi.AuditStream != "multicast" {
			t.Fatalf("host %s: AuditStream %q (%v), want multicast\n%s", h.name, mi.AuditStream, err, h.d.logText())
		}
		h.cg = h.e.cgroup("web")
		h.uuid = registry.NewUUID()
		got, err := c.TagCgroup(ctx, h.cg, id, client.TagOptions{Name: "web", UUID: h.uuid})
		if err != nil || got != id {
			t.Fatalf("host %s: TagCgroup with ID %d: %d, %v", h.name, id, got, err)
		}
		testenv.StartJournalUpload(t, r, certs, "host-"+h.name, h.j.Dir, time.Second)
	}
	if hosts[0].j.MachineID == hosts[1].j.MachineID {
		t.Fatalf("both journals have machine ID %s", hosts[0].j.MachineID)
	}

	// Each host execs a marker in its container, in turn: a, b, a, b.
	// Each waits for its own entry before the next, so the kernel numbers
	// them in that order.
	for round := 1; round <= 2; round++ {
		for _, h := range hosts {
			marker := fmt.Sprintf("fleet-%s-%s-%d", run, h.name, round)
			p := h.e.startIn(h.cg, nil, "/bin/sh", "-c", "exec /bin/true "+marker)
			_ = p.Wait()
			got := h.j.WaitFor(t, 10*time.Second, 1, "AUDIT_EXECVE_ARGV=/bin/true "+marker)
			if len(got) != 1 || got[0].Get("AUDIT_CONTAINER_UUID") != h.uuid || got[0].Get("AUDIT_EVENT_ID") == "" {
				t.Fatalf("host %s: the exec of %s in its journal: %v, want one entry with UUID %s and an AUDIT_EVENT_ID\ncontainer %d's entries: %v\ncontidd:\n%s",
					h.name, marker, got, h.uuid, id, h.j.Query(t, "AUDIT_CONTAINER_ID="+idStr), h.d.logText())
			}
			h.serials = append(h.serials, got[0].Get("AUDIT_EVENT_ID"))
		}
	}
	// The kernel's multicast stream reaches every reader in serial
	// order, so a host that wrote its own exec numbered after one of the
	// other's has read that one too: it had no tag for the process and
	// wrote nothing. (b's last exec comes after a's last, and a's
	// journal cannot prove it was read, so it is not asked about.)
	for i, h := range hosts {
		other := hosts[1-i]
		last, _ := strconv.ParseUint(h.serials[len(h.serials)-1], 10, 64)
		checked := 0
		for _, s := range other.serials {
			if n, _ := strconv.ParseUint(s, 10, 64); n > last {
				continue
			}
			checked++
			if got := h.j.Query(t, "AUDIT_EVENT_ID="+s); len(got) != 0 {
				t.Errorf("host %s wrote host %s's exec %s: %v", h.name, other.name, s, got)
			}
		}
		if checked == 0 {
			t.Fatalf("host %s read none of host %s's execs %v before its own last %d", h.name, other.name, other.serials, last)
		}
	}

	// What each host wrote of its container: the sets the collector must
	// give back, and the row contidctl fleet must sum them into.
	local := map[string][]string{}
	summary := map[string]fleetRow{}
	for _, h := range hosts {
		row := fleetRow{Machine: h.j.MachineID, UUID: h.uuid, ID: uint64(id)}
		entries := h.j.Query(t, "AUDIT_CONTAINER_UUID="+h.uuid, "_SYSTEMD_UNIT=contidd.service")
		var execs []string
		var tag, create bool
		for _, en := range entries {
			if en.Get("AUDIT_CONTAINER_ID") != idStr || en.Get("_MACHINE_ID") != h.j.MachineID {
				t.Fatalf("host %s: an entry of container %d with ID %s, machine %s: %v", h.name, id, en.Get("AUDIT_CONTAINER_ID"), en.Get("_MACHINE_ID"), en)
			}
			if s := en.Get("AUDIT_EVENT_ID"); s != "" {
				execs = append(execs, s)
			}
			if en.Get("MESSAGE_ID") != "" {
				row.Records++
			} else {
				row.Events++
			}
			at, err := strconv.ParseUint(en.Get("__REALTIME_TIMESTAMP"), 10, 64)
			if err != nil {
				t.Fatalf("host %s: an entry's __REALTIME_TIMESTAMP: %v", h.name, err)
			}
			if row.First == 0 || at < row.First {
				row.First = at
			}
			row.Last = max(row.Last, at)
			tag = tag || en.Get("MESSAGE_ID") == journal.MessageTagGranted
			create = create || en.Get("MESSAGE_ID") == journal.MessageContainerCreated
		}
		for _, s := range h.serials {
			if !slices.Contains(execs, s) {
				t.Fatalf("host %s: exec %s not among its container's entries %v", h.name, s, execs)
			}
		}
		if !tag || !create {
			t.Fatalf("host %s: tag record %v, create record %v among its container's entries, want both: %v", h.name, tag, create, entries)
		}
		local[h.uuid] = entryKeys(entries)
		summary[h.uuid] = row
	}

	// Wait for the collector to hold every entry of both containers.
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range hosts {
		for {
			got := fleetEvents(t, r.Dir, "--uuid="+h.uuid)
			if len(got) >= len(local[h.uuid]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the collector holds %d of host %s's %d entries of container %s", len(got), h.name, len(local[h.uuid]), h.uuid)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	files, _ := filepath.Glob(filepath.Join(r.Dir, "remote-*.journal"))
	t.Logf("collector files %v (checks client certificates: %v); entries of container %d: host a %d, host b %d",
		files, r.ChecksClients, id, len(local[hosts[0].uuid]), len(local[hosts[1].uuid]))
	if !r.ChecksClients && len(files) != 1 {
		t.Fatalf("collector files %v: without --trust both hosts, uploading from 127.0.0.1, should share one", files)
	}

	a, b := hosts[0], hosts[1]
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"host a by UUID", []string{"--uuid=" + a.uuid}, local[a.uuid]},
		{"host b by UUID", []string{"--uuid=" + b.uuid}, local[b.uuid]},
		{"host a by ID and machine", []string{idStr, "--machine=" + a.j.MachineID}, local[a.uuid]},
		{"host b by ID and machine", []string{idStr, "--machine=" + b.j.MachineID}, local[b.uuid]},
		{"control: by ID alone, both hosts", []string{idStr}, slices.Concat(local[a.uuid], local[b.uuid])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fleetEvents(t, r.Dir, tt.args...)
			keys := entryKeys(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(keys, want) {
				t.Fatalf("events %v on the collector: %d entries\n%s\nwant %d\n%s",
					tt.args, len(keys), strings.Join(keys, "\n"), len(want), strings.Join(want, "\n"))
			}
		})
	}
	// The fleet summary over the collector: one row per host and
	// container, the same ID on both, with each host's counts.
	argv := []string{"fleet", "--directory=" + r.Dir, "--json=short", "--no-pager"}
	out, errOut, code := ctl(t, nil, nil, argv...)
	if code != 0 {
		t.Fatalf("contidctl %v: exit %d: %s", argv, code, errOut)
	}
	var rows []fleetRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("contidctl %v: %v: %s", argv, err, out)
	}
	want := []fleetRow{summary[a.uuid], summary[b.uuid]}
	slices.SortFunc(rows, func(x, y fleetRow) int { return strings.Compare(x.UUID, y.UUID) })
	slices.SortFunc(want, func(x, y fleetRow) int { return strings.Compare(x.UUID, y.UUID) })
	if !slices.Equal(rows, want) {
		t.Fatalf("contidctl %v:\n%+v\nwant\n%+v", argv, rows, want)
	}
}

// fleetRow is what TestTwoHostsOverlappingIDs checks of a row of
// contidctl fleet --json.
type fleetRow struct {
	Machine string `json:"machine_id"`
	UUID    string `json:"uuid"`
	ID      uint64 `json:"id"`
	Events  uint64 `json:"events"`
	Records uint64 `json:"records"`
	First   uint64 `json:"first_seen_usec"`
	Last    uint64 `json:"last_seen_usec"`
}

// fleetEvents runs contidctl events on the collector's directory and
// returns the entries it lists.
func fleetEvents(t *testing.T, dir string, args ...string) []testenv.Entry {
	t.Helper()
	argv := append([]string{"events", "--directory=" + dir, "--no-pager", "-o", "json"}, args...)
	out, errOut, code := ctl(t, nil, nil, argv...)
	if code == 1 && out == "" {
		// journalctl of systemd 252 exits 1 when no file has a match.
		return nil
	}
	if code != 0 {
		t.Fatalf("contidctl %v: exit %d: %s", argv, code, errOut)
	}
	entries, err := testenv.ParseEntries([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// entryKeys names each entry by its host, the time journald stamped on
// it and what it records, sorted; journal-remote keeps all of them as
// the sending journald wrote them, so an entry has the same key on the
// host and on the collector.
func entryKeys(entries []testenv.Entry) []string {
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		keys = append(keys, strings.Join([]string{e.Get("_MACHINE_ID"), e.Get("__REALTIME_TIMESTAMP"),
			e.Get("__MONOTONIC_TIMESTAMP"), e.Get("AUDIT_CONTAINER_UUID"), e.Get("MESSAGE_ID"), e.Get("AUDIT_EVENT_ID")}, " "))
	}
	slices.Sort(keys)
	return keys
}
