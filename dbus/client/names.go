package client

import (
	"strconv"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

// The public names of docs/DESIGN.md and org.contid1(5). They never
// change: users and scripts depend on them.
const (
	BusName            = "org.contid1"
	ManagerPath        = godbus.ObjectPath("/org/contid1")
	ManagerInterface   = "org.contid1.Manager"
	ContainerInterface = "org.contid1.Container"
	containerPrefix    = "/org/contid1/container/"

	// PolkitActionTag is the polkit action that lets an otherwise
	// unprivileged caller tag.
	PolkitActionTag = "org.contid1.tag"

	propertiesInterface = "org.freedesktop.DBus.Properties"
)

// ContainerPath is the object path of container id.
func ContainerPath(id contid.ID) godbus.ObjectPath {
	return godbus.ObjectPath(containerPrefix + strconv.FormatUint(uint64(id), 10))
}

// ParseContainerPath is ContainerPath's inverse; ok is false for any other
// path, including non-canonical decimal spellings.
func ParseContainerPath(p godbus.ObjectPath) (contid.ID, bool) {
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
