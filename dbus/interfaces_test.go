package dbus

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// TestInterfaceTable checks the entries themselves: a malformed type
// would be served to every client that introspects, and a repeated name
// would make a member unreachable.
func TestInterfaceTable(t *testing.T) {
	for _, in := range []*iface{managerInterface, containerInterface} {
		t.Run(in.Name, func(t *testing.T) {
			seen := map[string]bool{}
			member := func(kind, name string) {
				if name == "" || seen[name] {
					t.Errorf("%s %q: empty or repeated member name", kind, name)
				}
				seen[name] = true
			}
			checkArgs := func(where string, args []arg) {
				names := map[string]bool{}
				for _, a := range args {
					if a.Name == "" || names[a.Name] {
						t.Errorf("%s: argument name %q empty or repeated", where, a.Name)
					}
					names[a.Name] = true
					if !singleType(a.Type) {
						t.Errorf("%s: argument %s has type %q, not one complete type", where, a.Name, a.Type)
					}
				}
			}
			for _, m := range in.Methods {
				member("method", m.Name)
				if m.Call == nil {
					t.Errorf("method %s has no handler", m.Name)
				}
				checkArgs(m.Name+" in", m.In)
				checkArgs(m.Name+" out", m.Out)
			}
			for _, s := range in.Signals {
				member("signal", s.Name)
				checkArgs(s.Name, s.Args)
			}
			for _, p := range in.Properties {
				member("property", p.Name)
				if !singleType(p.Type) {
					t.Errorf("property %s has type %q, not one complete type", p.Name, p.Type)
				}
				switch p.Emits {
				case emitsTrue, emitsConst, emitsFalse:
				default:
					t.Errorf("property %s: EmitsChangedSignal %q", p.Name, p.Emits)
				}
			}
		})
	}
}

// singleType reports whether s is one complete type. A dict entry holds
// exactly one value type, so a{sS} parses just when S is one; godbus's
// Signature.Single answers the opposite.
func singleType(s string) bool {
	_, err := godbus.ParseSignature("a{s" + s + "}")
	return err == nil
}

func TestSingleType(t *testing.T) {
	for s, want := range map[string]bool{"s": true, "a{sv}": true, "a(tsssto)": true, "": false, "ss": false, "a": false, "x{": false} {
		if got := singleType(s); got != want {
			t.Errorf("singleType(%q) = %v, want %v", s, got, want)
		}
	}
}

// checkProperties compares the values a getter returns with the table's
// properties: the same names, each of the declared type.
func checkProperties(t *testing.T, in *iface, props map[string]godbus.Variant) {
	t.Helper()
	declared := map[string]string{}
	for _, p := range in.Properties {
		declared[p.Name] = p.Type
		v, ok := props[p.Name]
		switch {
		case !ok:
			t.Errorf("%s.%s is in the table but has no value", in.Name, p.Name)
		case v.Signature().String() != p.Type:
			t.Errorf("%s.%s is declared %s but its value is %s", in.Name, p.Name, p.Type, v.Signature())
		}
	}
	for name := range props {
		if _, ok := declared[name]; !ok {
			t.Errorf("%s.%s has a value but is not in the table", in.Name, name)
		}
	}
}

// The properties' values come from managerProperties and
// containerProperties; their names and types must be the table's, which
// is what introspection promises.
func TestPropertiesMatchTable(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	checkProperties(t, managerInterface, m.managerProperties())
	c := &registry.Container{ID: 5, Chain: contid.Chain{3, 5}, Cgroups: []registry.Cgroup{{Path: "/x", ID: 77}}}
	checkProperties(t, containerInterface, containerProperties(c, 0))
}

// signalChecker is an emitter that holds every signal on a table
// interface to its declaration, and every PropertiesChanged to the
// declared properties: their types, and that only properties announced
// as changing are announced.
type signalChecker struct {
	mu      sync.Mutex
	emitted map[string]bool
	errs    []string
}

func (e *signalChecker) emit(_ godbus.ObjectPath, ifaceName, member string, body ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emitted[ifaceName+"."+member] = true
	fail := func(format string, args ...any) { e.errs = append(e.errs, fmt.Sprintf(format, args...)) }
	sig := godbus.SignatureOf(body...).String()
	if ifaceName == ifaceProperties && member == "PropertiesChanged" {
		in := tableInterface(body[0].(string))
		if in == nil {
			fail("PropertiesChanged for %s, which is not in the table", body[0])
			return
		}
		for name, v := range body[1].(map[string]godbus.Variant) {
			i := slices.IndexFunc(in.Properties, func(p property) bool { return p.Name == name })
			switch {
			case i < 0:
				fail("PropertiesChanged announces %s.%s, which is not in the table", in.Name, name)
			case in.Properties[i].Emits != emitsTrue:
				fail("PropertiesChanged announces %s.%s, declared EmitsChangedSignal %q", in.Name, name, in.Properties[i].Emits)
			case v.Signature().String() != in.Properties[i].Type:
				fail("PropertiesChanged gives %s.%s as %s, declared %s", in.Name, name, v.Signature(), in.Properties[i].Type)
			}
		}
		return
	}
	in := tableInterface(ifaceName)
	if in == nil {
		fail("signal %s.%s on an interface not in the table", ifaceName, member)
		return
	}
	i := slices.IndexFunc(in.Signals, func(s signal) bool { return s.Name == member })
	if i < 0 {
		fail("signal %s.%s is not in the table", ifaceName, member)
		return
	}
	if want := signature(in.Signals[i].Args); sig != want {
		fail("signal %s.%s carries (%s), declared (%s)", ifaceName, member, sig, want)
	}
}

// The Manager's signals, and the property changes it announces, are
// those the table declares, with the declared types.
func TestSignalsMatchTable(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	e := &signalChecker{emitted: map[string]bool{}}
	m.addEmitter(e)
	c := &registry.Container{ID: 5, Chain: contid.Chain{5}, State: registry.StateExited}
	m.containerNew(c)
	m.containerRemoved(c)
	m.EmitTamperDenied(5, 42, "kill")
	m.metadataChanged(&registry.Container{ID: 5}, &registry.Container{ID: 5, Name: "n", Unit: "u.scope"}, "test")
	m.SetEventSource(func() EventCounts { return EventCounts{Written: 1, Lost: 2, Ambiguous: 3} })
	m.signalsDropped.Add(1)
	m.flushCounters()
	m.flushSignals()

	e.mu.Lock()
	defer e.mu.Unlock()
	sort.Strings(e.errs)
	for _, err := range e.errs {
		t.Error(err)
	}
	for _, s := range managerInterface.Signals {
		if !e.emitted[managerInterface.Name+"."+s.Name] {
			t.Errorf("signal %s was not emitted: the test no longer covers it", s.Name)
		}
	}
	if !e.emitted[ifaceProperties+".PropertiesChanged"] {
		t.Error("no PropertiesChanged was emitted: the test no longer covers them")
	}
}
