package dbus

import (
	"context"
	"fmt"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// The org.contid1 interfaces are described once, here, in the manner of
// sd-bus's vtables: the dispatcher checks each call's body against its
// method's in arguments and its reply against the out arguments,
// introspection data is written from the same entries, and the man page
// test reads them. A method is served exactly when it is in this table;
// the property getters (managerProperties, containerProperties) and the
// signals the Manager emits are held to it by interfaces_test.go.

// arg is one argument of a method or signal: its name as introspection
// shows it and its D-Bus type, a single complete type.
type arg struct {
	Name, Type string
}

// methodCall is what a handler gets: args is the body, already checked
// against the signature the method's In spells, so the handler may
// assert the Go types godbus decodes those to (an h is a UnixFD only
// where descriptors were passed; otherwise a UnixFDIndex).
type methodCall struct {
	ctx  context.Context
	p    *peer
	msg  *godbus.Message
	path godbus.ObjectPath
	args []any
}

type method struct {
	Name    string
	In, Out []arg
	// Call returns the reply body, of the signature Out spells, or the
	// error that becomes the D-Bus error (toDBusError).
	Call func(*Manager, methodCall) ([]any, error)
}

// emits is the value of a property's emitsChangedSignal annotation.
type emits string

const emitsChangedSignal = "org.freedesktop.DBus.Property.EmitsChangedSignal"

const (
	emitsTrue  emits = "" // the default: PropertiesChanged carries the value
	emitsConst emits = "const"
	emitsFalse emits = "false" // changes, but is never announced
)

// property is a read-only property: every contid property is, and
// Properties.Set refuses them all. Its value comes from
// Manager.managerProperties or containerProperties.
type property struct {
	Name, Type string
	Emits      emits
}

type signal struct {
	Name string
	Args []arg
}

// iface is one interface as the table declares it.
type iface struct {
	Name       string
	Methods    []method
	Properties []property
	Signals    []signal
}

var managerInterface = &iface{
	Name: client.ManagerInterface,
	Methods: []method{
		{
			Name: "TagUnit",
			In:   []arg{{"unit", "s"}, {"id", "t"}, {"options", "a{sv}"}},
			Out:  []arg{{"id", "t"}, {"container", "o"}},
			Call: tagNamed((*Manager).tagUnit),
		},
		{
			Name: "TagMachine",
			In:   []arg{{"machine", "s"}, {"id", "t"}, {"options", "a{sv}"}},
			Out:  []arg{{"id", "t"}, {"container", "o"}},
			Call: tagNamed((*Manager).tagMachine),
		},
		{
			Name: "TagCgroup",
			In:   []arg{{"cgroup", "s"}, {"id", "t"}, {"options", "a{sv}"}},
			Out:  []arg{{"id", "t"}, {"container", "o"}},
			Call: tagNamed((*Manager).tagCgroup),
		},
		{
			Name: "TagProcess",
			In:   []arg{{"pidfd", "h"}, {"id", "t"}, {"options", "a{sv}"}},
			Out:  []arg{{"id", "t"}, {"container", "o"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				fd, ok := c.args[0].(godbus.UnixFD)
				if !ok {
					if n, _ := c.msg.Headers[godbus.FieldUnixFDs].Value().(uint32); n > 0 {
						return nil, newError(client.NameInvalidArgs, fmt.Sprintf("TagProcess's pidfd names descriptor %v, and the call brought %d", c.args[0], n))
					}
					return nil, newError(client.NameInvalidArgs, "TagProcess needs a pidfd passed as a file descriptor (unix fd passing was not negotiated)")
				}
				// The call's descriptor is closed with the call; tagProcess
				// closes its own duplicate.
				dup := func() (int, error) { return dupFD(int(fd)) }
				rid, obj, err := m.tagProcess(c.ctx, c.p, c.msg, dup, c.args[1].(uint64), c.args[2].(map[string]godbus.Variant))
				return []any{rid, obj}, err
			},
		},
		{
			Name: "TagPID",
			In:   []arg{{"pid", "u"}, {"id", "t"}, {"options", "a{sv}"}},
			Out:  []arg{{"id", "t"}, {"container", "o"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				rid, obj, err := m.tagPID(c.ctx, c.p, c.msg, c.args[0].(uint32), c.args[1].(uint64), c.args[2].(map[string]godbus.Variant))
				return []any{rid, obj}, err
			},
		},
		{
			Name: "GetContainer",
			In:   []arg{{"id", "t"}},
			Out:  []arg{{"container", "o"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				id := c.args[0].(uint64)
				if err := validLookupID(id); err != nil {
					return nil, err
				}
				ct, err := m.cfg.Registry.Get(contid.ID(id))
				if err != nil {
					return nil, err
				}
				return []any{client.ContainerPath(ct.ID)}, nil
			},
		},
		{
			Name: "GetContainerByPID",
			In:   []arg{{"pid", "u"}},
			Out:  []arg{{"container", "o"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				ct, err := m.containerByPID(c.args[0].(uint32))
				if err != nil {
					return nil, err
				}
				return []any{client.ContainerPath(ct.ID)}, nil
			},
		},
		{
			Name: "GetContainerByUnit",
			In:   []arg{{"unit", "s"}},
			Out:  []arg{{"container", "o"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				unit := c.args[0].(string)
				if err := validUnitName(unit); err != nil {
					return nil, err
				}
				ct, err := m.cfg.Registry.ByUnit(unit)
				if err != nil {
					return nil, err
				}
				return []any{client.ContainerPath(ct.ID)}, nil
			},
		},
		{
			Name: "ListContainers",
			Out:  []arg{{"containers", "a(tsssto)"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				release, err := m.enterList(c.ctx, c.p)
				if err != nil {
					return nil, err
				}
				defer release()
				return []any{m.listContainers()}, nil
			},
		},
	},
	Properties: []property{
		{"Version", "s", emitsConst},
		{"Enforcement", "s", emitsConst},
		{"EnforcementReason", "s", emitsConst},
		{"Containers", "u", emitsTrue},
		{"EventsWritten", "t", emitsTrue},
		{"EventsLost", "t", emitsTrue},
		{"EventsAmbiguous", "t", emitsTrue},
		{"SignalsDropped", "t", emitsTrue},
		{"AuditStream", "s", emitsFalse},
		{"AuditRulesLoaded", "u", emitsFalse},
		{"AuditRulesMissing", "as", emitsFalse},
	},
	Signals: []signal{
		{client.SignalContainerNew, []arg{{"id", "t"}, {"container", "o"}}},
		{client.SignalContainerRemoved, []arg{{"id", "t"}, {"container", "o"}}},
		{client.SignalTamperDenied, []arg{{"id", "t"}, {"pid", "u"}, {"operation", "s"}}},
	},
}

var containerInterface = &iface{
	Name: client.ContainerInterface,
	Methods: []method{
		{
			Name: "ListProcesses",
			Out:  []arg{{"pids", "au"}},
			Call: func(m *Manager, c methodCall) ([]any, error) {
				ct, err := m.containerAt(c.path)
				if err != nil {
					return nil, err
				}
				return []any{m.listProcesses(ct)}, nil
			},
		},
	},
	Properties: []property{
		{"Id", "t", emitsConst},
		{"Name", "s", emitsTrue},
		{"Unit", "s", emitsTrue},
		{"Manager", "s", emitsTrue},
		{"Image", "s", emitsTrue},
		{"ManagerID", "s", emitsTrue},
		{"UUID", "s", emitsConst},
		{"ControlGroup", "s", emitsConst},
		{"CgroupId", "t", emitsConst},
		{"ParentId", "t", emitsConst},
		{"Chain", "at", emitsConst},
		{"Depth", "u", emitsConst},
		{"State", "s", emitsTrue},
		{"CreatedUSec", "t", emitsConst},
		{"OwnerUID", "u", emitsConst},
		{"OwnerPID", "u", emitsConst},
		{"Flags", "as", emitsConst},
		{"AllowBPF", "b", emitsConst},
		{"AllowModules", "b", emitsConst},
		{"DenialsSuppressed", "t", emitsFalse},
	},
}

// tagNamed adapts the Tag methods whose target is a name or path.
func tagNamed(f func(*Manager, context.Context, *peer, *godbus.Message, string, uint64, map[string]godbus.Variant) (uint64, godbus.ObjectPath, error)) func(*Manager, methodCall) ([]any, error) {
	return func(m *Manager, c methodCall) ([]any, error) {
		rid, obj, err := f(m, c.ctx, c.p, c.msg, c.args[0].(string), c.args[1].(uint64), c.args[2].(map[string]godbus.Variant))
		return []any{rid, obj}, err
	}
}

// interfaceOf is the table interface an object of kind k serves, or nil.
func interfaceOf(k objKind) *iface {
	switch k {
	case objManager:
		return managerInterface
	case objContainer:
		return containerInterface
	}
	return nil
}

// tableInterface is the table interface called name, or nil.
func tableInterface(name string) *iface {
	for _, in := range []*iface{managerInterface, containerInterface} {
		if in.Name == name {
			return in
		}
	}
	return nil
}

func (in *iface) method(name string) *method {
	for i := range in.Methods {
		if in.Methods[i].Name == name {
			return &in.Methods[i]
		}
	}
	return nil
}

// signature is the D-Bus signature of args, as a body carries them.
func signature(args []arg) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(a.Type)
	}
	return b.String()
}
