package dbus

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/introspect from what contidd serves")

// xmlNode is one element of introspection data with its attributes and
// children in order; whitespace between elements is not part of it.
type xmlNode struct {
	name     string
	attrs    map[string]string
	children []*xmlNode
}

// String renders the node on one line per element, attributes sorted, so
// two trees that differ show where.
func (n *xmlNode) String() string {
	var b strings.Builder
	var walk func(n *xmlNode, depth int)
	walk = func(n *xmlNode, depth int) {
		keys := make([]string, 0, len(n.attrs))
		for k := range n.attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "%s%s", strings.Repeat(" ", depth), n.name)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%q", k, n.attrs[k])
		}
		b.WriteByte('\n')
		for _, c := range n.children {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

// parseXMLTree reads introspection data into its element tree, with the
// DOCTYPE as a first node of its own. Text other than whitespace is an
// error: the format has none.
func parseXMLTree(data string) (*xmlNode, error) {
	doc := &xmlNode{name: "#document"}
	stack := []*xmlNode{doc}
	d := xml.NewDecoder(strings.NewReader(data))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.Directive:
			top.children = append(top.children, &xmlNode{name: "!" + strings.Join(strings.Fields(string(tok)), " ")})
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) != 0 {
				return nil, fmt.Errorf("unexpected text %q", tok)
			}
		default:
			return nil, fmt.Errorf("unexpected %T", tok)
		}
	}
	return doc, nil
}

// TestIntrospectGolden compares the introspection data of each kind of
// object, parsed, with testdata/introspect: members, argument names,
// types, directions and annotations, in order. A deliberate change to the
// API updates the copies with -update (and the man page, which
// TestManPageMatchesIntrospection checks).
func TestIntrospectGolden(t *testing.T) {
	tests := []struct {
		file string
		path godbus.ObjectPath
		kind objKind
	}{
		{"root.xml", "/", objRoot},
		{"org.xml", "/org", objRoot},
		{"manager.xml", client.ManagerPath, objManager},
		{"container.xml", client.ContainerPath(42), objContainer},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			served := (&Manager{}).introspect(tt.path, tt.kind)
			golden := filepath.Join("testdata", "introspect", tt.file)
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(served), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			wantTree, err := parseXMLTree(string(want))
			if err != nil {
				t.Fatalf("%s: %v", golden, err)
			}
			gotTree, err := parseXMLTree(served)
			if err != nil {
				t.Fatalf("introspection data of %s: %v", tt.path, err)
			}
			if g, w := gotTree.String(), wantTree.String(); g != w {
				t.Errorf("introspection data of %s differs from %s\n--- served:\n%s--- %s:\n%s", tt.path, golden, g, golden, w)
			}
		})
	}
}
