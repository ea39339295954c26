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
// reply body or the D-Bus error. It never panics on caller input: the
// body is checked against the expected signature before it is unpacked.
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
	want := func(s string) *godbus.Error {
		if sig.String() != s {
			return newError(client.NameInvalidArgs, fmt.Sprintf("%s.%s takes (%s), got (%s)", iface, member, s, sig.String()))
		}
		return nil
	}
	reply := func(vals []any, err error) ([]any, *godbus.Error) {
		if err != nil {
			return nil, toDBusError(err)
		}
		return vals, nil
	}

	switch iface {
	case ifaceIntrospection:
		if member != "Introspect" {
			break
		}
		if e := want(""); e != nil {
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
	case client.ManagerInterface:
		if kind != objManager {
			break
		}
		switch member {
		case "TagUnit", "TagMachine", "TagCgroup":
			if e := want("sta{sv}"); e != nil {
				return nil, e
			}
			s, id, opts := msg.Body[0].(string), msg.Body[1].(uint64), msg.Body[2].(map[string]godbus.Variant)
			f := map[string]func(context.Context, *peer, *godbus.Message, string, uint64, map[string]godbus.Variant) (uint64, godbus.ObjectPath, error){
				"TagUnit": m.tagUnit, "TagMachine": m.tagMachine, "TagCgroup": m.tagCgroup,
			}[member]
			rid, obj, err := f(ctx, p, msg, s, id, opts)
			return reply([]any{rid, obj}, err)
		case "TagProcess":
			if e := want("hta{sv}"); e != nil {
				return nil, e
			}
			fd, ok := msg.Body[0].(godbus.UnixFD)
			if !ok {
				return nil, newError(client.NameInvalidArgs, "TagProcess needs a pidfd passed as a file descriptor (unix fd passing was not negotiated)")
			}
			// The call's descriptor is closed with the call; tagProcess
			// closes its own duplicate.
			dup := func() (int, error) { return dupFD(int(fd)) }
			rid, obj, err := m.tagProcess(ctx, p, msg, dup, msg.Body[1].(uint64), msg.Body[2].(map[string]godbus.Variant))
			return reply([]any{rid, obj}, err)
		case "TagPID":
			if e := want("uta{sv}"); e != nil {
				return nil, e
			}
			rid, obj, err := m.tagPID(ctx, p, msg, msg.Body[0].(uint32), msg.Body[1].(uint64), msg.Body[2].(map[string]godbus.Variant))
			return reply([]any{rid, obj}, err)
		case "GetContainer":
			if e := want("t"); e != nil {
				return nil, e
			}
			id := msg.Body[0].(uint64)
			if err := validLookupID(id); err != nil {
				return reply(nil, err)
			}
			c, err := m.cfg.Registry.Get(contid.ID(id))
			if err != nil {
				return reply(nil, err)
			}
			return []any{client.ContainerPath(c.ID)}, nil
		case "GetContainerByPID":
			if e := want("u"); e != nil {
				return nil, e
			}
			c, err := m.containerByPID(msg.Body[0].(uint32))
			if err != nil {
				return reply(nil, err)
			}
			return []any{client.ContainerPath(c.ID)}, nil
		case "GetContainerByUnit":
			if e := want("s"); e != nil {
				return nil, e
			}
			unit := msg.Body[0].(string)
			if err := validUnitName(unit); err != nil {
				return reply(nil, err)
			}
			c, err := m.cfg.Registry.ByUnit(unit)
			if err != nil {
				return reply(nil, err)
			}
			return []any{client.ContainerPath(c.ID)}, nil
		case "ListContainers":
			if e := want(""); e != nil {
				return nil, e
			}
			release, err := m.enterList(ctx, p)
			if err != nil {
				return reply(nil, err)
			}
			defer release()
			return []any{m.listContainers()}, nil
		}
	case client.ContainerInterface:
		if kind != objContainer || member != "ListProcesses" {
			break
		}
		if e := want(""); e != nil {
			return nil, e
		}
		c, err := m.containerAt(path)
		if err != nil {
			return reply(nil, err)
		}
		return []any{m.listProcesses(c)}, nil
	default:
		return nil, newError(client.NameUnknownInterface, fmt.Sprintf("%s has no interface %s", path, iface))
	}
	return nil, newError(client.NameUnknownMethod, fmt.Sprintf("%s has no method %s.%s", path, iface, member))
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
	case "ListProcesses":
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
		ifname, props = client.ContainerInterface, containerProperties(c)
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
