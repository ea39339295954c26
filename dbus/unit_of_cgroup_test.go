package dbus

import "testing"

func TestUnitOfCgroup(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/machine.slice/run-r1234.scope", "run-r1234.scope"},
		{"/machine.slice/systemd-nspawn@web.service", "systemd-nspawn@web.service"},
		{"/machine.slice/machine-web.scope/payload", ""},
		{"/contid-demo.slice/web", ""},
		{"/machine.slice", ""},
		{"/", ""},
	} {
		if got := unitOfCgroup(tc.path); got != tc.want {
			t.Errorf("unitOfCgroup(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
