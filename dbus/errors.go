package dbus

import (
	"errors"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// toDBusError maps err to its D-Bus error; the message is the wrapped
// error's text so the caller learns what to fix.
func toDBusError(err error) *godbus.Error {
	var de *godbus.Error
	if errors.As(err, &de) {
		return de
	}
	return godbus.NewError(client.NameOf(err), []any{err.Error()})
}

func newError(name, msg string) *godbus.Error {
	return godbus.NewError(name, []any{msg})
}
