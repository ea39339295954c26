package dbus

import (
	"fmt"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// TestDispatchErrorTexts pins the error name and text of every way the
// dispatcher refuses a call before a handler runs: clients and scripts
// match on them, and they are part of the wire behaviour.
func TestDispatchErrorTexts(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	p := selfPeer(t)
	const container = "/org/contid1/container/5"
	tests := []struct {
		name      string
		msg       *godbus.Message
		errName   string
		errString string
	}{
		{"wrong signature", call(client.ManagerPath, client.ManagerInterface, "GetContainer", "5"),
			client.NameInvalidArgs, "org.contid1.Manager.GetContainer takes (t), got (s)"},
		{"missing arguments", call(client.ManagerPath, client.ManagerInterface, "TagCgroup"),
			client.NameInvalidArgs, "org.contid1.Manager.TagCgroup takes (sta{sv}), got ()"},
		{"wrong signature, interface guessed", call(client.ManagerPath, "", "TagPID", "1", uint64(0), map[string]godbus.Variant{}),
			client.NameInvalidArgs, "org.contid1.Manager.TagPID takes (uta{sv}), got (sta{sv})"},
		{"arguments to a method without", call(client.ManagerPath, client.ManagerInterface, "ListContainers", uint32(1)),
			client.NameInvalidArgs, "org.contid1.Manager.ListContainers takes (), got (u)"},
		{"container method with arguments", call(container, client.ContainerInterface, "ListProcesses", uint32(1)),
			client.NameInvalidArgs, "org.contid1.Container.ListProcesses takes (), got (u)"},
		{"Introspect with arguments", call(client.ManagerPath, ifaceIntrospection, "Introspect", "x"),
			client.NameInvalidArgs, "org.freedesktop.DBus.Introspectable.Introspect takes (), got (s)"},
		{"TagProcess without fd", call(client.ManagerPath, client.ManagerInterface, "TagProcess", godbus.UnixFDIndex(0), uint64(0), map[string]godbus.Variant{}),
			client.NameInvalidArgs, "TagProcess needs a pidfd passed as a file descriptor (unix fd passing was not negotiated)"},
		{"unknown object", call("/org/contid1/nope", client.ManagerInterface, "ListContainers"),
			client.NameUnknownObject, "no object at /org/contid1/nope"},
		{"unknown interface", call(client.ManagerPath, "org.example.X", "Y"),
			client.NameUnknownInterface, "/org/contid1 has no interface org.example.X"},
		{"unknown method", call(client.ManagerPath, client.ManagerInterface, "Frobnicate"),
			client.NameUnknownMethod, "/org/contid1 has no method org.contid1.Manager.Frobnicate"},
		{"unknown method, interface guessed", call(client.ManagerPath, "", "Frobnicate"),
			client.NameUnknownMethod, "/org/contid1 has no method org.contid1.Manager.Frobnicate"},
		{"container method on the manager", call(client.ManagerPath, client.ContainerInterface, "ListProcesses"),
			client.NameUnknownMethod, "/org/contid1 has no method org.contid1.Container.ListProcesses"},
		{"container method on the manager, interface guessed", call(client.ManagerPath, "", "ListProcesses"),
			client.NameUnknownMethod, "/org/contid1 has no method org.contid1.Container.ListProcesses"},
		{"manager method on a container", call(container, client.ManagerInterface, "TagUnit", "a.service", uint64(0), map[string]godbus.Variant{}),
			client.NameUnknownMethod, container + " has no method org.contid1.Manager.TagUnit"},
		{"manager method on a container, interface guessed", call(container, "", "TagUnit", "a.service", uint64(0), map[string]godbus.Variant{}),
			client.NameUnknownInterface, container + " has no interface "},
		{"manager method on the root", call("/", client.ManagerInterface, "ListContainers"),
			client.NameUnknownMethod, "/ has no method org.contid1.Manager.ListContainers"},
		{"unknown method on the root, interface guessed", call("/", "", "Frobnicate"),
			client.NameUnknownInterface, "/ has no interface "},
		{"unknown Introspectable method", call(client.ManagerPath, ifaceIntrospection, "Frobnicate"),
			client.NameUnknownMethod, "/org/contid1 has no method org.freedesktop.DBus.Introspectable.Frobnicate"},
		{"unknown Peer method", call(container, ifacePeer, "Frobnicate"),
			client.NameUnknownMethod, container + " has no method org.freedesktop.DBus.Peer.Frobnicate"},
		{"Get with the wrong signature", call(client.ManagerPath, ifaceProperties, "Get", "x"),
			client.NameInvalidArgs, "Get takes (ss)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, derr := m.dispatch(p, tt.msg)
			if derr == nil {
				t.Fatalf("want %s, got the reply %v", tt.errName, body)
			}
			if derr.Name != tt.errName || len(derr.Body) != 1 || derr.Body[0] != tt.errString {
				t.Errorf("got %s %q\nwant %s %q", derr.Name, derr.Body, tt.errName, tt.errString)
			}
		})
	}
}

// A handler whose reply drifted from its table entry is caught: the
// caller gets an internal error rather than a body introspection does not
// promise, and the journal a BUG line. The control is the same call with
// the real handler.
func TestDispatchReplyChecked(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	var bugs []string
	m.log = func(_ int, format string, args ...any) {
		if strings.HasPrefix(format, "BUG") {
			bugs = append(bugs, fmt.Sprintf(format, args...))
		}
	}
	msg := call(client.ManagerPath, client.ManagerInterface, "GetContainerByUnit", "a.service")
	if _, derr := m.dispatch(selfPeer(t), msg); derr == nil || derr.Name != client.NameNoSuchContainer || len(bugs) != 0 {
		t.Fatalf("control: want %s and no BUG, got %v, %q", client.NameNoSuchContainer, derr, bugs)
	}

	meth := managerInterface.method("GetContainerByUnit")
	orig := meth.Call
	t.Cleanup(func() { meth.Call = orig })
	meth.Call = func(*Manager, methodCall) ([]any, error) { return []any{"/org/contid1/container/1"}, nil }
	body, derr := m.dispatch(selfPeer(t), msg)
	if derr == nil || derr.Name != client.NameFailed {
		t.Fatalf("want %s, got %v %v", client.NameFailed, body, derr)
	}
	if len(bugs) != 1 || !strings.Contains(bugs[0], "replies (s), its table entry says (o)") {
		t.Fatalf("want one BUG naming both signatures, got %q", bugs)
	}
}
