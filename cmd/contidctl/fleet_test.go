package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	hostA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hostB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	uuid1 = "11111111-1111-4111-8111-111111111111"
	uuid2 = "22222222-2222-4222-8222-222222222222"
	// a tag record's MESSAGE_ID (journal/catalog.go); the command
	// does not link the journal package.
	tagGranted = "24b709d2fb0647249c5540b55d6f7ef4"
)

// ev is an audit event of container id on host at t µs; rec one of
// contidd's records.
func ev(host, uuid, id string, t uint64) fleetEntry {
	return fleetEntry{unit: "contidd.service", machine: host, hostname: "host-" + host[:1], id: id, uuid: uuid,
		name: "web", manager: "podman", realtime: t}
}

func rec(host, uuid, id string, t uint64) fleetEntry {
	e := ev(host, uuid, id, t)
	e.messageID = tagGranted
	return e
}

func row(host, uuid string, id, events, records, first, last uint64) fleetRow {
	return fleetRow{fleetKey: fleetKey{machine: host, uuid: uuid, id: id}, hostname: "host-" + host[:1],
		name: "web", manager: "podman", events: events, records: records, first: first, last: last}
}

// The summary counts each container instance on each host once, keeps
// contidd's records apart from audit events, and counts nothing that
// contidd's unit did not write or that names no container.
func TestFleetSummary(t *testing.T) {
	forged := ev(hostA, uuid1, "42", 5)
	forged.unit = "evil.service"
	unattributed := ev(hostA, "", "", 6)
	relabelled := ev(hostA, uuid1, "42", 30)
	relabelled.name, relabelled.manager = "web2", "kubelet"
	noHostname := ev(hostB, uuid2, "42", 40)
	noHostname.hostname = ""
	tests := []struct {
		name    string
		entries []fleetEntry
		want    []fleetRow
	}{
		{"none", nil, []fleetRow{}},
		{"two hosts, two containers", []fleetEntry{
			rec(hostA, uuid1, "4", 10), ev(hostA, uuid1, "4", 11), ev(hostA, uuid1, "4", 12),
			rec(hostB, uuid2, "7", 20), ev(hostB, uuid2, "7", 21),
		}, []fleetRow{row(hostA, uuid1, 4, 2, 1, 10, 12), row(hostB, uuid2, 7, 1, 1, 20, 21)}},
		{"same ID on two hosts", []fleetEntry{
			ev(hostB, uuid2, "42", 9), ev(hostA, uuid1, "42", 10), ev(hostB, uuid2, "42", 11), ev(hostA, uuid1, "42", 12),
		}, []fleetRow{row(hostA, uuid1, 42, 2, 0, 10, 12), row(hostB, uuid2, 42, 2, 0, 9, 11)}},
		// Files of several hosts are merged in no strict time order:
		// first and last are the extremes, not the first and last read.
		{"entries out of order", []fleetEntry{
			ev(hostA, uuid1, "42", 50), ev(hostA, uuid1, "42", 10), ev(hostA, uuid1, "42", 90), ev(hostA, uuid1, "42", 30),
		}, []fleetRow{row(hostA, uuid1, 42, 4, 0, 10, 90)}},
		{"one entry: first is last", []fleetEntry{ev(hostA, uuid1, "42", 7)},
			[]fleetRow{row(hostA, uuid1, 42, 1, 0, 7, 7)}},
		{"entries at the same instant", []fleetEntry{rec(hostA, uuid1, "42", 7), ev(hostA, uuid1, "42", 7)},
			[]fleetRow{row(hostA, uuid1, 42, 1, 1, 7, 7)}},
		{"old entries without UUID: one row per ID, apart from the UUID's", []fleetEntry{
			ev(hostA, "", "42", 1), ev(hostA, "", "42", 2), ev(hostA, "", "43", 3), ev(hostA, uuid1, "42", 4),
		}, []fleetRow{row(hostA, "", 42, 2, 0, 1, 2), row(hostA, "", 43, 1, 0, 3, 3), row(hostA, uuid1, 42, 1, 0, 4, 4)}},
		{"a UUID given again to a new ID: a row per life", []fleetEntry{
			ev(hostA, uuid1, "42", 1), ev(hostA, uuid1, "43", 2),
		}, []fleetRow{row(hostA, uuid1, 42, 1, 0, 1, 1), row(hostA, uuid1, 43, 1, 0, 2, 2)}},
		{"forged and unattributed entries are not counted", []fleetEntry{
			forged, unattributed, ev(hostA, uuid1, "0", 7), ev(hostA, uuid1, "x", 7), ev(hostA, uuid1, "42", 8),
		}, []fleetRow{row(hostA, uuid1, 42, 1, 0, 8, 8)}},
		{"labels of the latest entry", []fleetEntry{relabelled, ev(hostA, uuid1, "42", 20)},
			[]fleetRow{{fleetKey: fleetKey{hostA, uuid1, 42}, hostname: "host-a", name: "web2", manager: "kubelet",
				events: 2, first: 20, last: 30}}},
		{"a host name from any entry", []fleetEntry{noHostname, ev(hostB, uuid2, "42", 10)},
			[]fleetRow{row(hostB, uuid2, 42, 2, 0, 10, 40)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFleetSummary()
			for _, e := range tt.entries {
				s.add(e)
			}
			got := s.rows()
			for i := range got {
				got[i].labelled, got[i].named = 0, 0
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("rows\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// journalctl prints a field as a string, as an array of bytes when it is
// not UTF-8, as an array of either when an entry repeats it, and as null
// when it is too large.
func TestDecodeFleetEntries(t *testing.T) {
	tests := []struct {
		name, in string
		want     []fleetEntry
		wantErr  string
	}{
		{"strings", `{"__REALTIME_TIMESTAMP":"5","_SYSTEMD_UNIT":"contidd.service","_MACHINE_ID":"` + hostA +
			`","_HOSTNAME":"h","MESSAGE_ID":"m","AUDIT_CONTAINER_ID":"42","AUDIT_CONTAINER_UUID":"` + uuid1 +
			`","AUDIT_CONTAINER_NAME":"web","AUDIT_CONTAINER_MANAGER":"podman","__CURSOR":"c"}`,
			[]fleetEntry{{unit: "contidd.service", machine: hostA, hostname: "h", messageID: "m", id: "42", uuid: uuid1,
				name: "web", manager: "podman", realtime: 5}}, ""},
		{"bytes, repeated, null; two entries", `{"__REALTIME_TIMESTAMP":"1","AUDIT_CONTAINER_NAME":[119,255]}` + "\n" +
			`{"__REALTIME_TIMESTAMP":"2","AUDIT_CONTAINER_ID":["42","43"],"AUDIT_CONTAINER_NAME":null}`,
			[]fleetEntry{{name: "w\xff", realtime: 1}, {id: "42", realtime: 2}}, ""},
		{"no timestamp", `{"AUDIT_CONTAINER_ID":"42"}`, nil, "__REALTIME_TIMESTAMP"},
		{"not JSON", `-- No entries --`, nil, "journalctl output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []fleetEntry
			err := decodeFleetEntries(strings.NewReader(tt.in), func(e fleetEntry) { got = append(got, e) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("entries %+v (%v), want %+v", got, err, tt.want)
			}
		})
	}
}

// fleet always asks journalctl for contidd's unit and, on the local
// journal, only the fields it sums (a collector's entries whole, to fold),
// whatever else narrows the query, and prints journalctl's
// entries as one table or one JSON shape.
func TestFleetCommand(t *testing.T) {
	bin := t.TempDir()
	argsFile := filepath.Join(bin, "args")
	entries := `{"__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"contidd.service","_MACHINE_ID":"` + hostA +
		`","_HOSTNAME":"host-a","AUDIT_CONTAINER_ID":"42","AUDIT_CONTAINER_UUID":"` + uuid1 +
		`","AUDIT_CONTAINER_NAME":"web","AUDIT_CONTAINER_MANAGER":"podman","MESSAGE_ID":"` + tagGranted + `"}
{"__REALTIME_TIMESTAMP":"1700000001000000","_SYSTEMD_UNIT":"contidd.service","_MACHINE_ID":"` + hostA +
		`","AUDIT_CONTAINER_ID":"42","AUDIT_CONTAINER_UUID":"` + uuid1 + `","AUDIT_CONTAINER_NAME":"web","AUDIT_CONTAINER_MANAGER":"podman"}
`
	if err := os.WriteFile(filepath.Join(bin, "entries"), []byte(entries), 0o644); err != nil {
		t.Fatal(err)
	}
	// A collector's entries are read whole, as the export format, to
	// fold journal-upload's repeats (journal/fold).
	export := "__CURSOR=c1\n__REALTIME_TIMESTAMP=1700000000000000\n_SYSTEMD_UNIT=contidd.service\n_MACHINE_ID=" + hostA +
		"\n_HOSTNAME=host-a\nAUDIT_CONTAINER_ID=42\nAUDIT_CONTAINER_UUID=" + uuid1 + "\nAUDIT_CONTAINER_NAME=web\nAUDIT_CONTAINER_MANAGER=podman\nMESSAGE_ID=" + tagGranted +
		"\n\n__CURSOR=c2\n__REALTIME_TIMESTAMP=1700000001000000\n_SYSTEMD_UNIT=contidd.service\n_MACHINE_ID=" + hostA +
		"\nAUDIT_CONTAINER_ID=42\nAUDIT_CONTAINER_UUID=" + uuid1 + "\nAUDIT_CONTAINER_NAME=web\nAUDIT_CONTAINER_MANAGER=podman\n\n"
	if err := os.WriteFile(filepath.Join(bin, "export"), []byte(export), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argsFile + "\ncase \" $* \" in *\" export \"*) cat " + filepath.Join(bin, "export") +
		";; *) cat " + filepath.Join(bin, "entries") + ";; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const fields = "-o\njson\n--output-fields=_SYSTEMD_UNIT,_MACHINE_ID,_HOSTNAME,MESSAGE_ID,AUDIT_CONTAINER_ID,AUDIT_CONTAINER_UUID,AUDIT_CONTAINER_NAME,AUDIT_CONTAINER_MANAGER\n--no-pager\n-q\n"
	const trusted = "_SYSTEMD_UNIT=contidd.service\n"
	table := "MACHINE                          HOST   ID UUID                                 NAME MANAGER EVENTS RECORDS FIRST                       LAST\n" +
		hostA + " host-a 42 " + uuid1 + " web  podman  1      1       Tue 2023-11-14 22:13:20 UTC Tue 2023-11-14 22:13:21 UTC\n\n1 containers listed.\n"
	jsonOut := `[{"machine_id":"` + hostA + `","hostname":"host-a","id":42,"uuid":"` + uuid1 +
		`","name":"web","manager":"podman","events":1,"records":1,"first_seen_usec":1700000000000000,"last_seen_usec":1700000001000000}]` + "\n"
	tests := []struct {
		name              string
		args              []string
		wantArgs, wantOut string
		wantCode          int
		wantErr           string
	}{
		{"all", []string{"fleet"}, trusted + fields, table, 0, ""},
		{"no legend", []string{"fleet", "--no-legend"}, trusted + fields, hostA + " host-a 42 " + uuid1 + " web podman 1 1 Tue 2023-11-14 22:13:20 UTC Tue 2023-11-14 22:13:21 UTC\n", 0, ""},
		{"json short", []string{"fleet", "--json=short"}, trusted + fields, jsonOut, 0, ""},
		{"by ID, range, collector, host", []string{"fleet", "42", "-S", "-1h", "--until=now", "--directory=" + dir, "--machine=" + strings.ToUpper(hostA), "--json=short"},
			"AUDIT_CONTAINER_ID=42\n" + trusted + "--since=-1h\n--until=now\n_MACHINE_ID=" + hostA + "\n--directory=" + dir + "\n-q\n-o\nexport\n--no-pager\n", jsonOut, 0, ""},
		{"by name", []string{"fleet", "web", "--json=short"}, "AUDIT_CONTAINER_NAME=web\n" + trusted + fields, jsonOut, 0, ""},
		{"by UUID", []string{"fleet", "--uuid=" + strings.ToUpper(uuid1), "--json=short"}, "AUDIT_CONTAINER_UUID=" + uuid1 + "\n" + trusted + fields, jsonOut, 0, ""},
		{"a match cannot replace the trusted one", []string{"fleet", "42", "_SYSTEMD_UNIT=evil.service"}, "", "", 2, "at most 1 argument"},
		{"UUID and ID", []string{"fleet", "42", "--uuid=" + uuid1}, "", "", 2, "give no ID or NAME"},
		{"ID 0", []string{"fleet", "0"}, "", "", 2, "not a container ID"},
		{"bad machine ID", []string{"fleet", "--machine=xyz"}, "", "", 2, "not a machine ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(argsFile)
			out, errOut, code := runBinary(t, []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "TZ=UTC"}, tt.args...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stdout\n%s\nstderr %q\nwant exit %d, stdout\n%s\nstderr saying %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			got, _ := os.ReadFile(argsFile)
			if string(got) != tt.wantArgs {
				t.Fatalf("fleet ran journalctl with\n%swant\n%s", got, tt.wantArgs)
			}
		})
	}
	var v []map[string]any
	if err := json.Unmarshal(bytes.TrimSpace([]byte(jsonOut)), &v); err != nil || len(v) != 1 {
		t.Fatalf("the expected JSON is not an array of one object: %v", err)
	}
}
