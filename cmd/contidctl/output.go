package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/contid/contid/dbus/client"
)

// jsonFormat is --json's value, as systemd's tools take it.
type jsonFormat string

const (
	jsonOff    jsonFormat = ""
	jsonPretty jsonFormat = "pretty"
	jsonShort  jsonFormat = "short"
)

func (f *jsonFormat) String() string { return string(*f) }
func (f *jsonFormat) Type() string   { return "pretty|short|off" }

func (f *jsonFormat) Set(s string) error {
	switch s {
	case "pretty", "short":
		*f = jsonFormat(s)
	case "off":
		*f = jsonOff
	default:
		return fmt.Errorf("--json takes pretty, short or off, not %q", s)
	}
	return nil
}

func (g *globals) printJSON(v any) error {
	var b []byte
	var err error
	if g.json == jsonShort {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(g.out, "%s\n", b)
	return err
}

// property is one property of a container, with its D-Bus name (what
// `show` prints and -p selects), its JSON key and its value.
type property struct {
	name, key string
	value     any
}

// text renders the value the way `show` prints it (systemctl show
// separates list elements with spaces).
func (p property) text() string {
	switch v := p.value.(type) {
	case string:
		return v
	case []uint64:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatUint(x, 10)
		}
		return strings.Join(s, " ")
	case []string:
		return strings.Join(v, " ")
	}
	return fmt.Sprint(p.value)
}

// containerProperties is the one description of a container that every
// command prints, so that `list --json`, `show --json`, `status --json`
// and `show` use the same names for the same fields. The chain is an
// array of IDs, innermost first: [4, 2, 1] is container 4 nested in 2,
// nested in 1.
func containerProperties(ci client.ContainerInfo) []property {
	chain := make([]uint64, len(ci.Chain))
	for i, x := range ci.Chain {
		chain[i] = uint64(x)
	}
	flags := ci.Flags
	if flags == nil {
		flags = []string{}
	}
	return []property{
		{"Id", "id", uint64(ci.ID)},
		{"Name", "name", ci.Name},
		{"State", "state", ci.State},
		{"Unit", "unit", ci.Unit},
		{"Manager", "manager", ci.Manager},
		{"Image", "image", ci.Image},
		{"ManagerID", "manager_id", ci.ManagerID},
		{"UUID", "uuid", ci.UUID},
		{"ControlGroup", "control_group", ci.ControlGroup},
		{"CgroupId", "cgroup_id", ci.CgroupID},
		{"ParentId", "parent_id", uint64(ci.ParentID)},
		{"Chain", "chain", chain},
		{"Depth", "depth", ci.Depth},
		{"CreatedUSec", "created_usec", ci.CreatedUSec},
		{"OwnerUID", "owner_uid", ci.OwnerUID},
		{"OwnerPID", "owner_pid", ci.OwnerPID},
		{"Flags", "flags", flags},
		{"AllowBPF", "allow_bpf", ci.AllowBPF},
		{"AllowModules", "allow_modules", ci.AllowModules},
		{"DenialsSuppressed", "denials_suppressed", ci.DenialsSuppressed},
		{"Object", "object", string(client.ContainerPath(ci.ID))},
	}
}

// object is a JSON object that keeps its keys in the order given, so that
// the output reads like `show`.
type object []property

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.key)
		v, err := json.Marshal(p.value)
		if err != nil {
			return nil, fmt.Errorf("property %s: %w", p.name, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// selectProperties keeps the properties named in want (by their D-Bus
// names, as -p takes them; comma-separated lists allowed), in the order
// of props. An unknown name is a usage error: a typo must not print
// nothing and succeed.
func selectProperties(props []property, want []string) ([]property, error) {
	if len(want) == 0 {
		return props, nil
	}
	wanted := map[string]bool{}
	for _, w := range want {
		for _, name := range strings.Split(w, ",") {
			if name == "" {
				continue
			}
			known := false
			for _, p := range props {
				known = known || p.name == name
			}
			if !known {
				return nil, usageError("unknown property %q (see contidctl show --help)", name)
			}
			wanted[name] = true
		}
	}
	var out []property
	for _, p := range props {
		if wanted[p.name] {
			out = append(out, p)
		}
	}
	return out, nil
}

func writeProperties(w io.Writer, props []property, valueOnly bool) {
	for _, p := range props {
		if valueOnly {
			fmt.Fprintln(w, p.text())
		} else {
			fmt.Fprintf(w, "%s=%s\n", p.name, p.text())
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeContainerTable prints rows of tab-separated cells in aligned
// columns, one container a row, with the header and a count of the
// containers unless noLegend. tabwriter counts runes, so tree glyphs in
// a cell keep the columns aligned.
func writeContainerTable(w io.Writer, noLegend bool, header string, rows []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	if !noLegend {
		fmt.Fprintln(tw, header)
	}
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	tw.Flush()
	if !noLegend {
		fmt.Fprintf(w, "\n%d containers listed.\n", len(rows))
	}
}
