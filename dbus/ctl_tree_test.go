package dbus_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// contidctl tree draws the nesting contidd records: top > mid > leaf
// three deep, side next to mid, and gone (exited) only with --all.
func TestContidctlTree(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	bus := "--address=" + e.busAddr
	tag := func(cg string, opts ...string) string {
		t.Helper()
		out, errOut, code := ctl(t, nil, nil, append([]string{bus, "tag-cgroup", cg}, opts...)...)
		if code != 0 {
			t.Fatalf("tag-cgroup %s: exit %d: %s", cg, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	top, mid, leaf, side, gone := e.cgroup("top"), e.cgroup("top/mid"), e.cgroup("top/mid/leaf"), e.cgroup("top/side"), e.cgroup("top/gone")
	e.startIn(leaf, nil, "sleep", "1000")
	e.startIn(side, nil, "sleep", "1000")
	topID := tag(top, "--name=top", "--allow-nesting")
	midID := tag(mid, "--name=mid", "--allow-nesting")
	leafID := tag(leaf, "--name=leaf")
	sideID := tag(side, "--name=side")
	goneID := tag(gone, "--name=gone")
	if err := os.Remove(filepath.Join(e.cgRoot, gone)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		out, _, _ := ctl(t, nil, nil, bus, "show", goneID, "-p", "State", "--value")
		return strings.TrimSpace(out) == "exited"
	})

	// Each row of want is a line: the tree glyphs and the ID, then the
	// name, the unit (whatever contidd derives for a test cgroup) and
	// the state.
	row := func(glyphs, id, name, state string) string {
		return "^" + regexp.QuoteMeta(glyphs+id) + ` +` + name + ` +\S+ +` + state + `$`
	}
	running := []string{
		"^ID +NAME +UNIT +STATE$",
		row("", topID, "top", "active"),
		row("├─", midID, "mid", "active"),
		row("│ └─", leafID, "leaf", "active"),
		row("└─", sideID, "side", "active"),
		"^$",
		"^4 containers listed.$",
	}
	all := []string{
		row("", topID, "top", "active"),
		row("├─", midID, "mid", "active"),
		row("│ └─", leafID, "leaf", "active"),
		row("├─", sideID, "side", "active"),
		row("└─", goneID, "gone", "exited"),
	}
	subtree := []string{
		row("", midID, "mid", "active"),
		row("└─", leafID, "leaf", "active"),
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string // regexps, one a line, all lines
	}{
		{"running", []string{bus, "tree"}, 0, running},
		{"p2p", []string{"tree", "--p2p", e.sock}, 0, running},
		{"--all", []string{"tree", "-a", bus, "--no-legend"}, 0, all},
		{"subtree by name", []string{"tree", "mid", bus, "--no-legend"}, 0, subtree},
		{"subtree by ID", []string{bus, "--no-legend", "tree", midID}, 0, subtree},
		{"exited subtree", []string{bus, "--no-legend", "tree", goneID}, 0, []string{row("", goneID, "gone", "exited")}},
		{"no such container", []string{bus, "tree", "nosuch"}, 4, nil},
		{"two arguments", []string{bus, "tree", "top", "mid"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, nil, nil, tt.args...)
			if code != tt.code {
				t.Fatalf("contidctl %s: exit %d, want %d\n%s%s", strings.Join(tt.args, " "), code, tt.code, out, errOut)
			}
			if tt.want == nil {
				return
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("contidctl %s printed %d lines, want %d:\n%s", strings.Join(tt.args, " "), len(lines), len(tt.want), out)
			}
			for i, w := range tt.want {
				if !regexp.MustCompile(w).MatchString(lines[i]) {
					t.Errorf("line %d is %q, want %s\n%s", i+1, lines[i], w, out)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		type node struct {
			ID       uint64  `json:"id"`
			Name     string  `json:"name"`
			State    string  `json:"state"`
			Control  string  `json:"control_group"`
			Children []*node `json:"children"`
		}
		var shape func(ns []*node) string
		shape = func(ns []*node) string {
			var s []string
			for _, n := range ns {
				s = append(s, n.Name+"("+shape(n.Children)+")")
			}
			return strings.Join(s, " ")
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{bus, "tree", "--json=short"}, "top(mid(leaf()) side())"},
			{[]string{bus, "tree", "--json", "--all"}, "top(mid(leaf()) side() gone())"},
			{[]string{bus, "tree", "mid", "--json=pretty"}, "mid(leaf())"},
		} {
			out, errOut, code := ctl(t, nil, nil, tc.args...)
			var forest []*node
			if code != 0 || json.Unmarshal([]byte(out), &forest) != nil {
				t.Fatalf("contidctl %s: exit %d: %s%s", strings.Join(tc.args, " "), code, out, errOut)
			}
			if got := shape(forest); got != tc.want {
				t.Errorf("contidctl %s: %s, want %s\n%s", strings.Join(tc.args, " "), got, tc.want, out)
			}
			if forest[0].Control == "" || forest[0].State != "active" {
				t.Errorf("contidctl %s: the objects lack show's properties: %s", strings.Join(tc.args, " "), out)
			}
		}
	})

	t.Run("completion", func(t *testing.T) {
		out, errOut, code := ctl(t, nil, nil, "__complete", bus, "tree", "")
		if code != 0 || !strings.Contains(out, "mid\tcontainer "+midID) || strings.Contains(out, "gone") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})
}
