package dbus

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// apiManPage is the D-Bus API reference, org.contid1(5).
const apiManPage = "../man/org.contid1.5"

// The page lists each object as busctl and systemd's D-Bus man pages do:
// a "node PATH {" block with its interfaces, one member per line. The
// tests below read those blocks back and compare them with the table in
// interfaces.go and with what contidd answers to Introspect, so the page
// cannot fall behind the code.

// apiMembers maps "kind interface.member" (kind: method, signal,
// property) to its rendered signature, for one object.
type apiMembers map[string]string

// apiObject is one object's interfaces: the members of the interfaces
// listed in full, and the names of those the page only mentions.
type apiObject struct {
	members apiMembers
	elided  map[string]bool
	full    map[string]bool
}

func newAPIObject() *apiObject {
	return &apiObject{members: apiMembers{}, elided: map[string]bool{}, full: map[string]bool{}}
}

type introArg struct {
	Name      string `xml:"name,attr"`
	Type      string `xml:"type,attr"`
	Direction string `xml:"direction,attr"`
}

type introAnnotation struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type introMember struct {
	Name string     `xml:"name,attr"`
	Args []introArg `xml:"arg"`
}

type introProperty struct {
	Name        string            `xml:"name,attr"`
	Type        string            `xml:"type,attr"`
	Access      string            `xml:"access,attr"`
	Annotations []introAnnotation `xml:"annotation"`
}

type introInterface struct {
	Name       string          `xml:"name,attr"`
	Methods    []introMember   `xml:"method"`
	Signals    []introMember   `xml:"signal"`
	Properties []introProperty `xml:"property"`
}

type introNode struct {
	Interfaces []introInterface `xml:"interface"`
}

// renderArgs writes arguments as the page does: "in s unit, out o x";
// signal arguments have no direction.
func renderArgs(args []introArg) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		s := a.Type + " " + a.Name
		if a.Direction != "" {
			s = a.Direction + " " + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// renderProperty writes a property's access, type and annotations as the
// page does: `@ANNOTATION("VALUE") readonly s`.
func renderProperty(access, typ string, annotations []string) string {
	mode := map[string]string{"read": "readonly", "write": "writeonly", "readwrite": "readwrite"}[access]
	return strings.Join(append(slices.Clone(annotations), mode+" "+typ), " ")
}

// servedObject parses what contidd answers to Introspect at path.
func servedObject(t *testing.T, path godbus.ObjectPath, kind objKind) *apiObject {
	t.Helper()
	data := (&Manager{}).introspect(path, kind)
	var n introNode
	if err := xml.Unmarshal([]byte(data), &n); err != nil {
		t.Fatalf("introspection data of %s does not parse: %v", path, err)
	}
	o := newAPIObject()
	for _, i := range n.Interfaces {
		o.full[i.Name] = true
		for _, m := range i.Methods {
			o.members["method "+i.Name+"."+m.Name] = renderArgs(m.Args)
		}
		for _, s := range i.Signals {
			o.members["signal "+i.Name+"."+s.Name] = renderArgs(s.Args)
		}
		for _, p := range i.Properties {
			var ann []string
			for _, a := range p.Annotations {
				ann = append(ann, fmt.Sprintf("@%s(%q)", a.Name, a.Value))
			}
			o.members["property "+i.Name+"."+p.Name] = renderProperty(p.Access, p.Type, ann)
		}
	}
	return o
}

// manLines returns the page's lines with the roff escapes it uses in
// literal text undone, numbered from 1.
func manLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(apiManPage)
	if err != nil {
		t.Fatalf("open the API man page: %v", err)
	}
	defer f.Close()
	unescape := strings.NewReplacer(`\-`, "-", `\e`, `\`, `\&`, "")
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, unescape.Replace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", apiManPage, err)
	}
	return lines
}

var (
	pageNode       = regexp.MustCompile(`^node (\S+) \{$`)
	pageElided     = regexp.MustCompile(`^interface (\S+) \{ \.\.\. \};$`)
	pageInterface  = regexp.MustCompile(`^interface (\S+) \{$`)
	pageSection    = regexp.MustCompile(`^(methods|signals|properties):$`)
	pageAnnotation = regexp.MustCompile(`^@(\S+)\("([^"]*)"\)$`)
	pageCall       = regexp.MustCompile(`^(\w+)\((.*)\);$`)
	pageProperty   = regexp.MustCompile(`^(readonly|writeonly|readwrite) (\S+) (\w+) = .*;$`)
)

// pageObjects parses the node blocks of the page, by object path. A line
// inside an interface that is none of the known forms is an error, so a
// typo cannot hide a member from the comparison.
func pageObjects(t *testing.T) map[string]*apiObject {
	t.Helper()
	objs := map[string]*apiObject{}
	var obj *apiObject
	var iface, section string
	var pending []string
	literal := false
	for i, raw := range manLines(t) {
		where := fmt.Sprintf("%s:%d", apiManPage, i+1)
		switch raw {
		case ".nf":
			literal = true
			continue
		case ".fi":
			literal = false
			continue
		}
		line := strings.Join(strings.Fields(raw), " ")
		if !literal || line == "" {
			continue
		}
		switch {
		case obj == nil:
			if m := pageNode.FindStringSubmatch(line); m != nil {
				obj = newAPIObject()
				objs[m[1]] = obj
			}
		case iface == "":
			if m := pageElided.FindStringSubmatch(line); m != nil {
				obj.elided[m[1]] = true
			} else if m := pageInterface.FindStringSubmatch(line); m != nil {
				iface, section = m[1], ""
				obj.full[iface] = true
			} else if line == "};" {
				obj = nil
			} else {
				t.Errorf("%s: expected an interface or the end of the node, got %q", where, line)
			}
		case line == "};":
			if len(pending) > 0 {
				t.Errorf("%s: annotation %v of no property", where, pending)
			}
			iface, pending = "", nil
		case pageSection.MatchString(line):
			section = strings.TrimSuffix(line, ":")
		case section == "methods" || section == "signals":
			m := pageCall.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%s: expected NAME(ARGS); in %s of %s, got %q", where, section, iface, line)
				continue
			}
			obj.members[strings.TrimSuffix(section, "s")+" "+iface+"."+m[1]] = m[2]
		case section == "properties":
			if m := pageAnnotation.FindStringSubmatch(line); m != nil {
				pending = append(pending, fmt.Sprintf("@%s(%q)", m[1], m[2]))
				continue
			}
			m := pageProperty.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%s: expected ACCESS TYPE NAME = ...; in properties of %s, got %q", where, iface, line)
				pending = nil
				continue
			}
			access := map[string]string{"readonly": "read", "writeonly": "write", "readwrite": "readwrite"}[m[1]]
			obj.members["property "+iface+"."+m[3]] = renderProperty(access, m[2], pending)
			pending = nil
		default:
			t.Errorf("%s: member outside methods:, signals: or properties: in %s: %q", where, iface, line)
		}
	}
	if obj != nil {
		t.Errorf("%s: a node block is not closed", apiManPage)
	}
	return objs
}

// tableObject renders the members the table in interfaces.go declares
// for an object of kind k as the page writes them.
func tableObject(k objKind) *apiObject {
	in := interfaceOf(k)
	o := newAPIObject()
	o.full[in.Name] = true
	directed := func(args []arg, direction string) []introArg {
		out := make([]introArg, 0, len(args))
		for _, a := range args {
			out = append(out, introArg{Name: a.Name, Type: a.Type, Direction: direction})
		}
		return out
	}
	for _, m := range in.Methods {
		o.members["method "+in.Name+"."+m.Name] = renderArgs(append(directed(m.In, "in"), directed(m.Out, "out")...))
	}
	for _, s := range in.Signals {
		o.members["signal "+in.Name+"."+s.Name] = renderArgs(directed(s.Args, ""))
	}
	for _, p := range in.Properties {
		var ann []string
		if p.Emits != emitsTrue {
			ann = append(ann, fmt.Sprintf("@%s(%q)", emitsChangedSignal, p.Emits))
		}
		o.members["property "+in.Name+"."+p.Name] = renderProperty("read", p.Type, ann)
	}
	return o
}

// TestManPageMatchesIntrospection compares every method, signal and
// property, with its arguments, types and annotations, against the
// listings in org.contid1(5), in both directions: once as the table in
// interfaces.go declares them, once as contidd serves them to
// Introspect. Standard org.freedesktop.DBus interfaces may be listed as
// "interface NAME { ... };"; contid's own must be listed in full.
func TestManPageMatchesIntrospection(t *testing.T) {
	page := pageObjects(t)
	objects := []struct {
		path godbus.ObjectPath
		kind objKind
	}{
		{client.ManagerPath, objManager},
		{client.ContainerPath(42), objContainer},
	}
	if len(page) != len(objects) {
		t.Errorf("%s lists %d objects, want %d (the manager and one container)", apiManPage, len(page), len(objects))
	}
	for _, o := range objects {
		t.Run(string(o.path), func(t *testing.T) {
			served := servedObject(t, o.path, o.kind)
			doc := page[string(o.path)]
			if doc == nil {
				t.Fatalf("%s has no node %s block", apiManPage, o.path)
			}
			for name := range served.full {
				switch {
				case doc.full[name]:
				case doc.elided[name] && strings.HasPrefix(name, "org.freedesktop.DBus."):
				case doc.elided[name]:
					t.Errorf("interface %s is only mentioned in %s; list its members", name, apiManPage)
				default:
					t.Errorf("interface %s is served but not in %s", name, apiManPage)
				}
			}
			for name := range doc.full {
				if !served.full[name] {
					t.Errorf("interface %s is in %s but not served", name, apiManPage)
				}
			}
			for name := range doc.elided {
				if !served.full[name] {
					t.Errorf("interface %s is in %s but not served", name, apiManPage)
				}
			}
			compareMembers(t, "in the table", tableObject(o.kind), doc)
			compareMembers(t, "served", served, doc)
		})
	}
}

// compareMembers compares the members of the interfaces code has and the
// page lists in full, both ways; which interfaces are listed is checked
// by the caller.
func compareMembers(t *testing.T, source string, code, doc *apiObject) {
	t.Helper()
	for _, key := range sortedKeys(code.members) {
		if !doc.full[ifaceOfKey(key)] {
			continue // an elided standard interface, or reported by the caller
		}
		got, ok := doc.members[key]
		switch {
		case !ok:
			t.Errorf("%s is %s but not in %s", key, source, apiManPage)
		case got != code.members[key]:
			t.Errorf("%s differs:\n %s: %s\n page: %s", key, source, code.members[key], got)
		}
	}
	for _, key := range sortedKeys(doc.members) {
		if !code.full[ifaceOfKey(key)] {
			continue
		}
		if _, ok := code.members[key]; !ok {
			t.Errorf("%s is in %s but not %s", key, apiManPage, source)
		}
	}
}

func sortedKeys(m apiMembers) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ifaceOfKey is the interface of "kind interface.member".
func ifaceOfKey(key string) string {
	_, qualified, _ := strings.Cut(key, " ")
	return qualified[:strings.LastIndexByte(qualified, '.')]
}

// pageSectionLines returns the lines of the page section (.SH or .SS)
// named title, up to the next section of either kind.
func pageSectionLines(t *testing.T, title string) []string {
	t.Helper()
	var out []string
	in := false
	for _, l := range manLines(t) {
		if strings.HasPrefix(l, ".SH ") || strings.HasPrefix(l, ".SS ") {
			name := strings.Trim(strings.TrimSpace(l[4:]), `"`)
			in = name == title
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	if out == nil {
		t.Fatalf("%s has no section %q", apiManPage, title)
	}
	return out
}

// optionKeysInCode reads the keys parseOptions accepts from its source:
// the cases of its switch on the key. Reading the source rather than a
// list kept here means a new option fails this test until it is
// documented.
func optionKeysInCode(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "args.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "parseOptions" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok {
				return true
			}
			if tag, ok := sw.Tag.(*ast.Ident); !ok || tag.Name != "k" {
				return true
			}
			for _, st := range sw.Body.List {
				for _, e := range st.(*ast.CaseClause).List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						keys = append(keys, s)
					}
				}
			}
			return false
		})
		return false
	})
	if len(keys) == 0 {
		t.Fatal("found no option keys in parseOptions (args.go): the test no longer reads it right")
	}
	sort.Strings(keys)
	return keys
}

// TestManPageTagOptions checks the a{sv} keys of the Tag methods: the
// page documents exactly the keys parseOptions knows, each with the type
// parseOptions accepts and refuses any other.
func TestManPageTagOptions(t *testing.T) {
	entry := regexp.MustCompile(`^\.BR (\w+) " \(" (\S+) \)$`)
	doc := map[string]string{}
	for _, l := range pageSectionLines(t, "Tag options") {
		if m := entry.FindStringSubmatch(l); m != nil {
			doc[m[1]] = m[2]
		}
	}
	code := optionKeysInCode(t)
	for _, k := range code {
		if _, ok := doc[k]; !ok {
			t.Errorf("option %s is accepted by parseOptions but not in %s", k, apiManPage)
		}
	}
	// A value of each type that every string option accepts ("tag" is a
	// valid Name and JoinPolicy).
	samples := map[string]any{"s": "tag", "b": true}
	for k, typ := range doc {
		if !slices.Contains(code, k) {
			t.Errorf("option %s is in %s but parseOptions does not know it", k, apiManPage)
			continue
		}
		v, ok := samples[typ]
		if !ok {
			t.Errorf("option %s has type %q in %s; add a sample value of that type to this test", k, typ, apiManPage)
			continue
		}
		if _, err := parseOptions(map[string]godbus.Variant{k: godbus.MakeVariant(v)}); err != nil {
			t.Errorf("option %s of type %s (as %s documents it) is refused: %v", k, typ, apiManPage, err)
		}
		other := map[string]any{"s": uint32(1), "b": "yes"}[typ]
		if _, err := parseOptions(map[string]godbus.Variant{k: godbus.MakeVariant(other)}); err == nil {
			t.Errorf("option %s accepts %s as well as the documented %s", k, godbus.MakeVariant(other).Signature(), typ)
		}
	}
}

// errorNamesInCode reads the D-Bus error names client declares (the
// constants Name*), evaluating the concatenations they are written as.
func errorNamesInCode(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "client/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			s, ok := values[e.Name]
			return s, ok
		case *ast.BinaryExpr:
			a, ok1 := eval(e.X)
			b, ok2 := eval(e.Y)
			return a + b, ok1 && ok2 && e.Op == token.ADD
		}
		return "", false
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if v, ok := eval(vs.Values[i]); ok {
						values[n.Name] = v
					}
				}
			}
		}
	}
	names := map[string]string{}
	for ident, v := range values {
		if strings.HasPrefix(ident, "Name") {
			names[ident] = v
		}
	}
	if len(names) == 0 {
		t.Fatal("found no Name* constants in client/errors.go: the test no longer reads it right")
	}
	// The parse must agree with the compiled constants.
	if names["NameAlreadyTagged"] != client.NameAlreadyTagged {
		t.Fatalf("read NameAlreadyTagged as %q, the compiled constant is %q", names["NameAlreadyTagged"], client.NameAlreadyTagged)
	}
	return names
}

// TestManPageErrorNames checks that every error name contidd can reply
// with (the client package's Name* constants) is explained under ERRORS,
// and that the page explains no other.
func TestManPageErrorNames(t *testing.T) {
	entry := regexp.MustCompile(`^\.B (org\.\S+)$`)
	doc := map[string]bool{}
	lines := pageSectionLines(t, "ERRORS")
	for i, l := range lines {
		if l == ".TP" && i+1 < len(lines) {
			if m := entry.FindStringSubmatch(lines[i+1]); m != nil {
				doc[m[1]] = true
			}
		}
	}
	code := map[string]bool{}
	for ident, name := range errorNamesInCode(t) {
		code[name] = true
		if !doc[name] {
			t.Errorf("error %s (client.%s) is not explained under ERRORS in %s", name, ident, apiManPage)
		}
	}
	for name := range doc {
		if !code[name] {
			t.Errorf("error %s is explained in %s but client declares no such name", name, apiManPage)
		}
	}
}
