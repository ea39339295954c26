package dbus

import (
	"context"
	"fmt"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/p2p"
	"github.com/contid/contid/registry"
)

// callTimeout bounds one request, including a polkit dialog.
const callTimeout = 3 * time.Minute

// dispatch handles one method call from either transport and returns the
// reply body or the D-Bus error. The standard interfaces are answered
// here; the org.contid1 ones are looked up in the table (interfaces.go).
// It never panics on caller input: the body is checked against the
// method's signature before its handler unpacks it.
func (m *Manager) dispatch(p *peer, msg *godbus.Message) (body []any, derr *godbus.Error) {
	defer func() {
		if r := recover(); r != nil {
			m.log(PrioErr, "BUG: panic handling %s: %v", describe(msg), r)
			body, derr = nil, newError(client.NameFailed, "internal error")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)

	kind := objectKind(path)
	if kind == objNone {
		return nil, newError(client.NameUnknownObject, fmt.Sprintf("no object at %s", path))
	}
	if iface == "" {
		iface = guessInterface(kind, member)
	}
	switch iface {
	case ifaceIntrospection:
		if member != "Introspect" {
			break
		}
		if e := checkSignature(iface, member, "", sig); e != nil {
			return nil, e
		}
		return []any{m.introspect(path, kind)}, nil
	case ifacePeer:
		switch member {
		case "Ping":
			return nil, nil
		case "GetMachineId":
			return []any{p2p.MachineID()}, nil
		}
	case ifaceProperties:
		return m.properties(path, kind, member, sig, msg.Body)
	default:
		in := tableInterface(iface)
		if in == nil {
			return nil, newError(client.NameUnknownInterface, fmt.Sprintf("%s has no interface %s", path, iface))
		}
		if in != interfaceOf(kind) {
			break
		}
		meth := in.method(member)
		if meth == nil {
			break
		}
		if e := checkSignature(iface, member, signature(meth.In), sig); e != nil {
			return nil, e
		}
		vals, err := meth.Call(m, methodCall{ctx: ctx, p: p, msg: msg, path: path, args: msg.Body})
		if err != nil {
			return nil, toDBusError(err)
		}
		// A handler that drifted from its table entry would answer with
		// what introspection does not promise.
		if got, want := godbus.SignatureOf(vals...).String(), signature(meth.Out); got != want {
			m.log(PrioErr, "BUG: %s replies (%s), its table entry says (%s)", describe(msg), got, want)
			return nil, newError(client.NameFailed, "internal error")
		}
		return vals, nil
	}
	return nil, newError(client.NameUnknownMethod, fmt.Sprintf("%s has no method %s.%s", path, iface, member))
}

// checkSignature refuses a body whose signature is not the one member
// takes.
func checkSignature(iface, member, want string, got godbus.Signature) *godbus.Error {
	if got.String() != want {
		return newError(client.NameInvalidArgs, fmt.Sprintf("%s.%s takes (%s), got (%s)", iface, member, want, got.String()))
	}
	return nil
}

// tagPID opens a pidfd for the PID once the caller is authorized, so the
// process is pinned from there on, exactly as if the caller had passed
// the pidfd.
func (m *Manager) tagPID(ctx context.Context, p *peer, msg *godbus.Message, pid uint32, id uint64, opts map[string]godbus.Variant) (uint64, godbus.ObjectPath, error) {
	if pid == 0 || pid > 1<<22 {
		return 0, "", fmt.Errorf("%w: %d is not a valid PID", contid.ErrInvalidArgs, pid)
	}
	open := func() (int, error) {
		fd, err := pidfdOpen(pid)
		if err != nil {
			return -1, fmt.Errorf("%w: no process %d: %v", contid.ErrInvalidArgs, pid, err)
		}
		return fd, nil
	}
	return m.tagProcess(ctx, p, msg, open, id, opts)
}

type objKind int

const (
	objNone objKind = iota
	objRoot         // "/", "/org", "/org/contid1/container": introspection only
	objManager
	objContainer
)

func objectKind(p godbus.ObjectPath) objKind {
	switch p {
	case "/", "/org", "/org/contid1/container":
		return objRoot
	case client.ManagerPath:
		return objManager
	}
	if _, ok := client.ParseContainerPath(p); ok {
		return objContainer
	}
	return objNone
}

// guessInterface serves calls that omit the interface, which the spec
// allows when the member name is unambiguous.
func guessInterface(k objKind, member string) string {
	switch member {
	case "Get", "GetAll", "Set":
		return ifaceProperties
	case "Introspect":
		return ifaceIntrospection
	case "Ping", "GetMachineId":
		return ifacePeer
	}
	// Container methods are named on any object, so such a call to the
	// manager is told the manager has no such method.
	if containerInterface.method(member) != nil {
		return client.ContainerInterface
	}
	if k == objManager {
		return client.ManagerInterface
	}
	return ""
}

func (m *Manager) containerAt(p godbus.ObjectPath) (*registry.Container, error) {
	id, _ := client.ParseContainerPath(p)
	return m.cfg.Registry.Get(id)
}

func (m *Manager) properties(path godbus.ObjectPath, kind objKind, member string, sig godbus.Signature, body []any) ([]any, *godbus.Error) {
	var props map[string]godbus.Variant
	var ifname string
	switch kind {
	case objManager:
		ifname, props = client.ManagerInterface, m.managerProperties()
	case objContainer:
		c, err := m.containerAt(path)
		if err != nil {
			return nil, newError(client.NameUnknownObject, fmt.Sprintf("no object at %s: %v", path, err))
		}
		ifname, props = client.ContainerInterface, containerProperties(c, m.deniedSuppressed(c))
	}
	switch member {
	case "Get":
		if sig.String() != "ss" {
			return nil, newError(client.NameInvalidArgs, "Get takes (ss)")
		}
		iface, name := body[0].(string), body[1].(string)
		if iface != ifname && iface != "" {
			return nil, newError(client.NameUnknownInterface, fmt.Sprintf("%s has no interface %s", path, registry.Truncate(iface)))
		}
		v, ok := props[name]
		if !ok {
			return nil, newError(client.NameUnknownProperty, fmt.Sprintf("%s has no property %s", ifname, registry.Truncate(name)))
		}
		return []any{v}, nil
	case "GetAll":
		if sig.String() != "s" {
			return nil, newError(client.NameInvalidArgs, "GetAll takes (s)")
		}
		iface := body[0].(string)
		if iface != ifname && iface != "" {
			if kind == objRoot || strings.HasPrefix(iface, "org.freedesktop.DBus.") {
				return []any{map[string]godbus.Variant{}}, nil
			}
			return nil, newError(client.NameUnknownInterface, fmt.Sprintf("%s has no interface %s", path, registry.Truncate(iface)))
		}
		if props == nil {
			props = map[string]godbus.Variant{}
		}
		return []any{props}, nil
	case "Set":
		return nil, newError(client.NamePropertyReadOnly, "all contid properties are read-only")
	}
	return nil, newError(client.NameUnknownMethod, fmt.Sprintf("no method %s.%s", ifaceProperties, member))
}

func describe(msg *godbus.Message) string {
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	return iface + "." + member
}
