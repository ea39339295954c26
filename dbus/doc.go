// Package dbus serves contid's org.contid1 D-Bus API (docs/DESIGN.md) on the
// system bus and on the peer-to-peer socket, decides who may tag (the
// connection's UID fixed at connect, polkit), maps errors to D-Bus error
// names, and follows systemd, machined and dockerd. The public names and the typed
// client are in dbus/client, which links none of this.
//
// Both transports share one dispatcher: godbus carries system-bus traffic,
// and the peer-to-peer socket is served by dbus/internal/p2p, which hands
// the Manager each call with the origin it pinned at accept (p2pService
// is the Manager as its dispatcher).
package dbus

// Interfaces of the D-Bus specification that contidd serves or calls.
const (
	ifaceProperties    = "org.freedesktop.DBus.Properties"
	ifaceIntrospection = "org.freedesktop.DBus.Introspectable"
	ifacePeer          = "org.freedesktop.DBus.Peer"
	ifaceBus           = "org.freedesktop.DBus"
)
