package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/contid/contid"
	"github.com/contid/contid/journal/fold"
)

// fleetCommand summarises the journal per host and container: events
// lists entries, fleet counts them. It is a verb of its own rather than
// an option of events because it takes none of events' journalctl
// options (-f, -n, -r, -o), needs no container to be named, and prints
// contidctl's own table and JSON rather than journalctl's.
func fleetCommand(g *globals) *cobra.Command {
	var o fleetOptions
	cmd := &cobra.Command{
		Use:   "fleet [ID|NAME|--uuid=UUID]",
		Short: "Summarise the audit events per host and container",
		Long: "Summarise the journal's audit events per host and container instance: the\n" +
			"host, the container's ID, UUID, name and manager, how many events and\n" +
			"contidd records it has, and when it was first and last seen. Reads the\n" +
			"local journal or, with --directory, a collector's; only entries of\n" +
			"contidd's own unit count. Needs no contidd.",
		Args:              maxArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.uuid != "" {
					return usageError("--uuid names the container: give no ID or NAME")
				}
				if err := o.setContainer(args[0]); err != nil {
					return err
				}
			}
			rows, err := o.read(cmd)
			if err != nil {
				return err
			}
			g.openPager()
			if g.json != jsonOff {
				objs := make([]object, len(rows))
				for i, r := range rows {
					objs[i] = r.properties()
				}
				return g.printJSON(objs)
			}
			writeFleetTable(g.out, g.noLegend, rows)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.uuid, "uuid", "", "only the container whose instance UUID is `UUID`")
	f.StringVarP(&o.since, "since", "S", "", "entries from `TIME` on (as journalctl takes it)")
	f.StringVarP(&o.until, "until", "U", "", "entries up to `TIME`")
	o.source.addFlags(f)
	return cmd
}

type fleetOptions struct {
	uuid, since, until string
	id                 contid.ID
	name               string
	source             eventsSource
}

// setContainer takes an ID as a match on AUDIT_CONTAINER_ID and anything
// else as a name, matched on AUDIT_CONTAINER_NAME rather than looked up
// in contidd: the containers summarised are mostly other hosts'.
func (o *fleetOptions) setContainer(arg string) error {
	if v, err := strconv.ParseUint(arg, 10, 64); err == nil {
		if v == 0 || contid.ID(v) == contid.Invalid {
			return usageError("%q is not a container ID", arg)
		}
		o.id = contid.ID(v)
		return nil
	}
	o.name = arg
	return nil
}

// fleetFields are the only fields journalctl is asked to print; it
// adds __CURSOR, __REALTIME_TIMESTAMP, __MONOTONIC_TIMESTAMP and
// _BOOT_ID to every entry whatever --output-fields says.
var fleetFields = []string{
	"_SYSTEMD_UNIT", "_MACHINE_ID", "_HOSTNAME", "MESSAGE_ID",
	"AUDIT_CONTAINER_ID", "AUDIT_CONTAINER_UUID", "AUDIT_CONTAINER_NAME", "AUDIT_CONTAINER_MANAGER",
}

// journalctlArgs always hold the match on contidd's unit, as events'
// do: any process may log AUDIT_CONTAINER_ID, so without it a container
// could add rows and counts of its own making.
func (o fleetOptions) journalctlArgs() []string {
	var args []string
	switch {
	case o.id != 0:
		args = append(args, "AUDIT_CONTAINER_ID="+strconv.FormatUint(uint64(o.id), 10))
	case o.name != "":
		args = append(args, "AUDIT_CONTAINER_NAME="+o.name)
	case o.uuid != "":
		args = append(args, "AUDIT_CONTAINER_UUID="+strings.ToLower(o.uuid))
	}
	args = append(args, "_SYSTEMD_UNIT=contidd.service")
	if o.since != "" {
		args = append(args, "--since="+o.since)
	}
	if o.until != "" {
		args = append(args, "--until="+o.until)
	}
	if o.source.directory == "" {
		args = append(args, "-o", "json", "--output-fields="+strings.Join(fleetFields, ","), "--no-pager", "-q")
	}
	return append(args, o.source.args()...)
}

// read runs journalctl and sums its entries as they stream in; a
// collector's are folded first (readFolded).
//
// What it costs: journalctl finds contidd's entries through the
// journal's field index, so other units' entries are never read; each
// of contidd's entries in the range (its own log lines too, which are
// then skipped) is read once and printed with the eight fields above
// and the four journalctl always adds. On the two-host test's collector
// that was 6.4 KB of JSON for 12 entries, against 34 KB for the whole
// entries: some 530 bytes an entry rather than 2.8 KB, so a million
// entries are about half a gigabyte through the pipe and a million
// small JSON decodes. Time grows with the entries; memory with the
// rows only, as entries are summed while they stream in.
func (o fleetOptions) read(cmd *cobra.Command) ([]fleetRow, error) {
	path, err := exec.LookPath("journalctl")
	if err != nil {
		return nil, errors.New("journalctl is not installed")
	}
	if o.source.directory != "" {
		return o.readFolded(cmd, path)
	}
	jc := exec.CommandContext(cmd.Context(), path, o.journalctlArgs()...)
	var stderr bytes.Buffer
	jc.Stderr = &stderr
	out, err := jc.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("run journalctl: %w", err)
	}
	if err := jc.Start(); err != nil {
		return nil, fmt.Errorf("run journalctl: %w", err)
	}
	s := newFleetSummary()
	derr := decodeFleetEntries(out, s.add)
	if derr != nil {
		// Let journalctl end rather than block on a full pipe.
		_, _ = io.Copy(io.Discard, out)
	}
	if err := jc.Wait(); err != nil {
		return nil, fmt.Errorf("journalctl: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if derr != nil {
		return nil, derr
	}
	return s.rows(), nil
}

// readFolded sums a collector's entries, each once: journal-upload
// sends again, after a collector outage, what the collector had stored,
// and a summary that counted the copy would count one event twice
// (journal/fold). Folding compares whole entries, so journalctl prints
// them whole (-o export, every field): on a collector this reads some
// 2.8 KB an entry where the local journal's eight fields are 530 bytes,
// and keeps a 32-byte digest of each distinct entry in memory.
func (o fleetOptions) readFolded(cmd *cobra.Command, journalctl string) ([]fleetRow, error) {
	s := newFleetSummary()
	_, err := readFolded(cmd.Context(), journalctl, append(o.journalctlArgs(), "-q"), func(e *fold.Entry) error {
		f := fleetEntry{}
		for name, v := range map[string]*string{
			"_SYSTEMD_UNIT": &f.unit, "_MACHINE_ID": &f.machine, "_HOSTNAME": &f.hostname, "MESSAGE_ID": &f.messageID,
			"AUDIT_CONTAINER_ID": &f.id, "AUDIT_CONTAINER_UUID": &f.uuid,
			"AUDIT_CONTAINER_NAME": &f.name, "AUDIT_CONTAINER_MANAGER": &f.manager,
		} {
			*v, _ = e.Value(name)
		}
		ts, _ := e.Value("__REALTIME_TIMESTAMP")
		t, err := strconv.ParseUint(ts, 10, 64)
		if err != nil {
			return fmt.Errorf("an entry with __REALTIME_TIMESTAMP %q", ts)
		}
		f.realtime = t
		s.add(f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.rows(), nil
}

// fleetEntry is what a summary needs of one journal entry.
type fleetEntry struct {
	unit, machine, hostname, messageID string
	id                                 string
	uuid, name, manager                string
	realtime                           uint64 // µs since the epoch
}

// decodeFleetEntries reads journalctl -o json's stream, one object an
// entry, and hands each entry on.
func decodeFleetEntries(r io.Reader, add func(fleetEntry)) error {
	dec := json.NewDecoder(r)
	for {
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("journalctl output: %w", err)
		}
		e := fleetEntry{
			unit: journalValue(raw["_SYSTEMD_UNIT"]), machine: journalValue(raw["_MACHINE_ID"]),
			hostname: journalValue(raw["_HOSTNAME"]), messageID: journalValue(raw["MESSAGE_ID"]),
			id: journalValue(raw["AUDIT_CONTAINER_ID"]), uuid: journalValue(raw["AUDIT_CONTAINER_UUID"]),
			name: journalValue(raw["AUDIT_CONTAINER_NAME"]), manager: journalValue(raw["AUDIT_CONTAINER_MANAGER"]),
		}
		ts := journalValue(raw["__REALTIME_TIMESTAMP"])
		t, err := strconv.ParseUint(ts, 10, 64)
		if err != nil {
			return fmt.Errorf("journalctl output: an entry with __REALTIME_TIMESTAMP %q", ts)
		}
		e.realtime = t
		add(e)
	}
}

// journalValue reads one of journalctl's JSON value forms as a string:
// a string, an array of bytes (data that is not UTF-8), or, for a field
// an entry repeats, an array of those, of which the first counts. null
// (a value too large to print) and a missing field are "".
func journalValue(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var b []byte
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		for _, n := range nums {
			b = append(b, byte(n))
		}
		return string(b)
	}
	var many []json.RawMessage
	if json.Unmarshal(v, &many) == nil && len(many) > 0 {
		return journalValue(many[0])
	}
	return ""
}

// fleetKey is one row: a container instance on one host. The UUID names
// the instance; entries from before contidd wrote UUIDs have none and
// are told apart by their ID alone. The ID is part of the key too, so
// that a UUID given again to a new life of a container (a pod recreated)
// shows each life.
type fleetKey struct {
	machine, uuid string
	id            uint64
}

type fleetRow struct {
	fleetKey
	hostname, name, manager string
	events, records         uint64
	first, last             uint64 // µs since the epoch
	// labelled and named are the times of the entries the labels and
	// the host name came from.
	labelled, named uint64
}

type fleetSummary struct {
	rowsByKey map[fleetKey]*fleetRow
}

func newFleetSummary() *fleetSummary {
	return &fleetSummary{rowsByKey: map[fleetKey]*fleetRow{}}
}

// add counts one entry. Entries not written by contidd's unit (which the
// journalctl match already leaves out) and those attributed to no
// container (contidd's own log lines, lost-event counts, ambiguous
// events) are not counted. An entry with a MESSAGE_ID is one of
// contidd's records (a tag, a container created or exited, a tamper
// denied: journal/catalog.go) and counts apart from audit events, which
// have none. The labels and host name are the latest entry's that has
// them: journal files of several hosts come in no overall time order.
func (s *fleetSummary) add(e fleetEntry) {
	if e.unit != "contidd.service" {
		return
	}
	id, err := strconv.ParseUint(e.id, 10, 64)
	if err != nil || id == 0 {
		return
	}
	k := fleetKey{machine: e.machine, uuid: e.uuid, id: id}
	r := s.rowsByKey[k]
	if r == nil {
		r = &fleetRow{fleetKey: k, first: e.realtime, last: e.realtime}
		s.rowsByKey[k] = r
	}
	if e.messageID != "" {
		r.records++
	} else {
		r.events++
	}
	r.first = min(r.first, e.realtime)
	r.last = max(r.last, e.realtime)
	if e.hostname != "" && (r.hostname == "" || e.realtime >= r.named) {
		r.hostname, r.named = e.hostname, e.realtime
	}
	if (e.name != "" || e.manager != "") && e.realtime >= r.labelled {
		r.name, r.manager, r.labelled = e.name, e.manager, e.realtime
	}
}

// rows are sorted by host, then by when each container was first seen.
func (s *fleetSummary) rows() []fleetRow {
	rows := make([]fleetRow, 0, len(s.rowsByKey))
	for _, r := range s.rowsByKey {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b fleetRow) int {
		return cmp.Or(cmp.Compare(a.hostname, b.hostname), cmp.Compare(a.machine, b.machine),
			cmp.Compare(a.first, b.first), cmp.Compare(a.id, b.id), cmp.Compare(a.uuid, b.uuid))
	})
	return rows
}

// properties is a row in the JSON shape: snake_case keys and
// microsecond timestamps, as list --json's created_usec; absent values
// are "".
func (r fleetRow) properties() object {
	return object{
		{"MachineID", "machine_id", r.machine},
		{"Hostname", "hostname", r.hostname},
		{"Id", "id", r.id},
		{"UUID", "uuid", r.uuid},
		{"Name", "name", r.name},
		{"Manager", "manager", r.manager},
		{"Events", "events", r.events},
		{"Records", "records", r.records},
		{"FirstSeenUSec", "first_seen_usec", r.first},
		{"LastSeenUSec", "last_seen_usec", r.last},
	}
}

func writeFleetTable(w io.Writer, noLegend bool, rows []fleetRow) {
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s", dash(r.machine), dash(r.hostname), r.id,
			dash(r.uuid), dash(r.name), dash(r.manager), r.events, r.records, formatUSec(r.first), formatUSec(r.last))
	}
	writeContainerTable(w, noLegend, "MACHINE\tHOST\tID\tUUID\tNAME\tMANAGER\tEVENTS\tRECORDS\tFIRST\tLAST", lines)
}

// formatUSec prints a realtime timestamp as systemd's tools do.
func formatUSec(us uint64) string {
	return time.UnixMicro(int64(us)).Format("Mon 2006-01-02 15:04:05 MST")
}
