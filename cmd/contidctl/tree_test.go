package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// box builds a container record; exited ones are marked with state.
func box(id, parent contid.ID, name, state string) client.ContainerInfo {
	return client.ContainerInfo{ID: id, ParentID: parent, Name: name, State: state}
}

// A host with: 1 > 2 > 3 (three deep), 2's siblings 5 and 7 under 1
// (given out of order), 6 exited under 1, 8 running under exited 9, and
// 10 alone.
var treeFixture = []client.ContainerInfo{
	box(7, 1, "g", "active"),
	box(1, 0, "a", "active"),
	box(3, 2, "c", "active"),
	box(2, 1, "b", "active"),
	box(5, 1, "e", "active"),
	box(6, 1, "f", "exited"),
	box(9, 0, "i", "exited"),
	box(8, 9, "h", "active"),
	box(10, 0, "", "active"),
}

func TestTreeDrawing(t *testing.T) {
	tests := []struct {
		name string
		all  bool
		top  contid.ID
		want string
	}{
		{"running only", false, 0, `
1     a - active
├─2   b - active
│ └─3 c - active
├─5   e - active
└─7   g - active
8     h - active
10    - - active
`},
		{"all", true, 0, `
1     a - active
├─2   b - active
│ └─3 c - active
├─5   e - active
├─6   f - exited
└─7   g - active
9     i - exited
└─8   h - active
10    - - active
`},
		{"subtree", false, 2, `
2   b - active
└─3 c - active
`},
		{"subtree of a leaf", false, 3, `
3 c - active
`},
		{"subtree of an exited container", true, 9, `
9   i - exited
└─8 h - active
`},
		{"not in the list", false, 6, "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			writeTree(&out, buildForest(visible(treeFixture, tt.all), tt.top), true)
			if got := "\n" + out.String(); got != tt.want {
				t.Errorf("got:%s\nwant:%s", got, tt.want)
			}
		})
	}
}

// The legend names the columns and counts the containers drawn.
func TestTreeLegend(t *testing.T) {
	var out strings.Builder
	list := []client.ContainerInfo{box(1, 0, "web", "active"), box(2, 1, "db", "active")}
	list[1].Unit = "db.scope"
	writeTree(&out, buildForest(list, 0), false)
	want := "ID  NAME UNIT     STATE\n1   web  -        active\n└─2 db   db.scope active\n\n2 containers listed.\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// --json nests each container's object in its parent's "children".
func TestTreeJSON(t *testing.T) {
	var g globals
	var out strings.Builder
	g.out, g.json = &out, jsonShort
	if err := g.printJSON(forestJSON(buildForest(visible(treeFixture, false), 0))); err != nil {
		t.Fatal(err)
	}
	type node struct {
		ID       uint64  `json:"id"`
		Name     string  `json:"name"`
		State    string  `json:"state"`
		Object   string  `json:"object"`
		Children []*node `json:"children"`
	}
	var got []*node
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(got) != 3 || got[0].ID != 1 || got[1].ID != 8 || got[2].ID != 10 {
		t.Fatalf("top level %s", out.String())
	}
	a := got[0]
	if len(a.Children) != 3 || a.Children[0].ID != 2 || len(a.Children[0].Children) != 1 ||
		a.Children[0].Children[0].ID != 3 || a.Children[0].Children[0].Object != "/org/contid1/container/3" {
		t.Fatalf("1's subtree: %s", out.String())
	}
	if a.Children[0].Children[0].Children == nil || len(got[2].Children) != 0 {
		t.Fatalf("a leaf's children must be [], not absent or null: %s", out.String())
	}
}
