// Package dbus serves contid's org.contid1 D-Bus API (docs/DESIGN.md) on the
// system bus and on the peer-to-peer socket, decides who may tag (caller
// capabilities, polkit), maps registry errors to D-Bus error names, follows
// systemd and machined, and provides the typed client contidctl and the
// tests use.
//
// Both transports share one dispatcher: godbus carries system-bus traffic,
// and a small server of our own speaks the peer-to-peer protocol (godbus
// has no server-side authentication), reusing godbus's message codec.
package dbus

import (
	"strconv"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

// Names of docs/DESIGN.md.
const (
	BusName            = "org.contid1"
	ManagerPath        = godbus.ObjectPath("/org/contid1")
	ManagerInterface   = "org.contid1.Manager"
	ContainerInterface = "org.contid1.Container"
	containerPrefix    = "/org/contid1/container/"

	// PolkitActionTag is the polkit action that lets an otherwise
	// unprivileged caller tag.
	PolkitActionTag = "org.contid1.tag"

	ifaceProperties    = "org.freedesktop.DBus.Properties"
	ifaceIntrospection = "org.freedesktop.DBus.Introspectable"
	ifacePeer          = "org.freedesktop.DBus.Peer"
	ifaceBus           = "org.freedesktop.DBus"
)

// ContainerPath is the object path of container id.
func ContainerPath(id contid.ID) godbus.ObjectPath {
	return godbus.ObjectPath(containerPrefix + strconv.FormatUint(uint64(id), 10))
}

// parseContainerPath is ContainerPath's inverse; ok is false for any other
// path, including non-canonical decimal spellings.
func parseContainerPath(p godbus.ObjectPath) (contid.ID, bool) {
	s, ok := strings.CutPrefix(string(p), containerPrefix)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(v, 10) != s || contid.ID(v) == contid.Unset || contid.ID(v) == contid.Invalid {
		return 0, false
	}
	return contid.ID(v), true
}
