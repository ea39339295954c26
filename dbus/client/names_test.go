package client

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

func TestContainerPath(t *testing.T) {
	for _, id := range []contid.ID{1, 42, contid.Invalid - 1} {
		got, ok := ParseContainerPath(ContainerPath(id))
		if !ok || got != id {
			t.Errorf("round trip of %d gave %d, %v", id, got, ok)
		}
	}
	for _, p := range []godbus.ObjectPath{"/org/contid1/container/0", "/org/contid1/container/01", "/org/contid1/container/18446744073709551615", "/org/contid1/container/x", "/org/contid1"} {
		if _, ok := ParseContainerPath(p); ok {
			t.Errorf("ParseContainerPath(%q) accepted", p)
		}
	}
}
