package dbus

import (
	"errors"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/registry"
)

func TestParseOptions(t *testing.T) {
	v := godbus.MakeVariant
	tests := []struct {
		name string
		in   map[string]godbus.Variant
		want registry.Options
		ok   bool
	}{
		{"empty", nil, registry.Options{}, true},
		{"all", map[string]godbus.Variant{"Name": v("web"), "AllowNesting": v(true), "JoinPolicy": v("ignore")},
			registry.Options{Name: "web", AllowNesting: true, JoinIgnore: true}, true},
		{"join tag", map[string]godbus.Variant{"JoinPolicy": v("tag")}, registry.Options{}, true},
		{"unknown key", map[string]godbus.Variant{"name": v("x")}, registry.Options{}, false},
		{"name wrong type", map[string]godbus.Variant{"Name": v(uint32(1))}, registry.Options{}, false},
		{"nesting wrong type", map[string]godbus.Variant{"AllowNesting": v("true")}, registry.Options{}, false},
		{"bad policy", map[string]godbus.Variant{"JoinPolicy": v("TAG")}, registry.Options{}, false},
		{"control char name", map[string]godbus.Variant{"Name": v("a\tb")}, registry.Options{}, false},
		{"long name", map[string]godbus.Variant{"Name": v(strings.Repeat("x", 256))}, registry.Options{}, false},
		{"origin", map[string]godbus.Variant{"Manager": v("podman"), "Image": v("busybox:1.36"), "ManagerID": v("3f2a")},
			registry.Options{Manager: "podman", Image: "busybox:1.36", ManagerID: "3f2a"}, true},
		{"manager wrong type", map[string]godbus.Variant{"Manager": v(true)}, registry.Options{}, false},
		{"manager with a space", map[string]godbus.Variant{"Manager": v("pod man")}, registry.Options{}, false},
		{"long image", map[string]godbus.Variant{"Image": v(strings.Repeat("i", 1025))}, registry.Options{}, false},
		{"control char manager ID", map[string]godbus.Variant{"ManagerID": v("a\nb")}, registry.Options{}, false},
		// The registry checks the text, and which UUIDs are held.
		{"uuid", map[string]godbus.Variant{"UUID": v("5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b")},
			registry.Options{UUID: "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"}, true},
		{"uuid wrong type", map[string]godbus.Variant{"UUID": v([]byte{1, 2})}, registry.Options{}, false},
		{"allow bpf", map[string]godbus.Variant{"AllowBPF": v(true)}, registry.Options{AllowBPF: true}, true},
		{"allow modules", map[string]godbus.Variant{"AllowModules": v(true)}, registry.Options{AllowModules: true}, true},
		{"both exceptions", map[string]godbus.Variant{"AllowBPF": v(true), "AllowModules": v(true), "AllowNesting": v(false)},
			registry.Options{AllowBPF: true, AllowModules: true}, true},
		{"allow bpf false", map[string]godbus.Variant{"AllowBPF": v(false)}, registry.Options{}, true},
		{"allow bpf as string", map[string]godbus.Variant{"AllowBPF": v("true")}, registry.Options{}, false},
		{"allow modules as int", map[string]godbus.Variant{"AllowModules": v(uint32(1))}, registry.Options{}, false},
		{"allow bpf wrong case", map[string]godbus.Variant{"AllowBpf": v(true)}, registry.Options{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOptions(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, contid.ErrInvalidArgs) {
				t.Fatalf("error %v does not wrap ErrInvalidArgs", err)
			}
			if tt.ok && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMachinedManager(t *testing.T) {
	tests := []struct{ service, want string }{
		{"systemd-nspawn", "nspawn"},
		{"nspawn", "nspawn"},
		{"libvirt-lxc", "libvirt-lxc"},
		{"", ""},
		{"has space", ""},
		{strings.Repeat("s", 65), ""},
	}
	for _, tt := range tests {
		if got := machinedManager(tt.service); got != tt.want {
			t.Errorf("machinedManager(%q) = %q, want %q", tt.service, got, tt.want)
		}
	}
}

func TestUnitAndMachineNames(t *testing.T) {
	units := map[string]bool{
		"foo.service": true, "systemd-nspawn@web.service": true, "machine-web.scope": true, "machine.slice": true,
		"foo": false, ".service": false, "foo.timer": false, "a/b.service": false, "a b.service": false, "": false,
	}
	for u, ok := range units {
		if err := validUnitName(u); ok != (err == nil) {
			t.Errorf("validUnitName(%q) = %v, want ok=%v", u, err, ok)
		}
	}
	machines := map[string]bool{"web": true, "web-1.example": true, "": false, "a/b": false, strings.Repeat("m", 65): false}
	for m, ok := range machines {
		if err := validMachineName(m); ok != (err == nil) {
			t.Errorf("validMachineName(%q) = %v, want ok=%v", m, err, ok)
		}
	}
}

// Every sentinel maps to its D-Bus name, and the client maps the name back
// to the same sentinel.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err  error
		name string
	}{
		{contid.ErrAlreadyTagged, "org.contid1.AlreadyTagged"},
		{contid.ErrNotDescendant, "org.contid1.NotDescendant"},
		{contid.ErrIDInUse, "org.contid1.IdInUse"},
		{contid.ErrUUIDInUse, "org.contid1.UUIDInUse"},
		{contid.ErrNoSuchContainer, "org.contid1.NoSuchContainer"},
		{client.ErrNoSuchUnit, "org.contid1.NoSuchUnit"},
		{client.ErrNoSuchMachine, "org.contid1.NoSuchMachine"},
		{client.ErrNoSuchCgroup, "org.contid1.NoSuchCgroup"},
		{contid.ErrNotFresh, "org.contid1.NotFresh"},
		{contid.ErrLimitExceeded, "org.contid1.LimitExceeded"},
		{contid.ErrAccessDenied, "org.freedesktop.DBus.Error.AccessDenied"},
		{contid.ErrInvalidArgs, "org.freedesktop.DBus.Error.InvalidArgs"},
		{errors.New("disk on fire"), "org.freedesktop.DBus.Error.Failed"},
	}
	for _, tt := range tests {
		wrapped := errors.Join(errors.New("context"), tt.err)
		de := toDBusError(wrapped)
		if de.Name != tt.name {
			t.Errorf("%v -> %s, want %s", tt.err, de.Name, tt.name)
		}
		if msg, _ := de.Body[0].(string); msg != wrapped.Error() {
			t.Errorf("message %q, want the wrapped text %q", msg, wrapped.Error())
		}
		back := &client.RemoteError{Name: de.Name}
		if tt.name != "org.freedesktop.DBus.Error.Failed" && !errors.Is(back, tt.err) {
			t.Errorf("%s does not map back to %v", tt.name, tt.err)
		}
	}
}

// FuzzArguments drives the validation of every caller-supplied argument:
// it must never panic, and whatever it accepts must be safe to use as a
// path below the cgroup2 root and as a record field.
func FuzzArguments(f *testing.F) {
	for _, s := range []string{"/machine.slice/x.scope", "", "/", "..", "/a/../b", "a/b", "/a//b", "/\x00", "x.service", "web", strings.Repeat("/a", 3000), "\xff\xfe"} {
		f.Add(s, uint64(0), s, "tag")
	}
	f.Add("/a", uint64(contid.Invalid), "name", "ignore")
	f.Fuzz(func(t *testing.T, p string, id uint64, name, policy string) {
		if err := registry.ValidateCgroupPath(p); err == nil {
			if !path.IsAbs(p) || path.Clean(p) != p || strings.Contains(p, "..") && containsDotDot(p) || !utf8.ValidString(p) || len(p) > maxPathLen {
				t.Fatalf("accepted unsafe cgroup path %q", p)
			}
		} else if !errors.Is(err, contid.ErrInvalidArgs) {
			t.Fatalf("ValidateCgroupPath(%q): unexpected error class %v", p, err)
		}
		if err := validTagID(id); (err == nil) != (contid.ID(id) != contid.Invalid) {
			t.Fatalf("validTagID(%d) = %v", id, err)
		}
		if err := validLookupID(id); (err == nil) != (id != 0 && contid.ID(id) != contid.Invalid) {
			t.Fatalf("validLookupID(%d) = %v", id, err)
		}
		o, err := parseOptions(map[string]godbus.Variant{"Name": godbus.MakeVariant(name), "JoinPolicy": godbus.MakeVariant(policy)})
		if err == nil {
			if o.Name != name || len(name) > maxNameLen || !utf8.ValidString(name) || (policy != "tag" && policy != "ignore") {
				t.Fatalf("accepted options Name=%q JoinPolicy=%q", name, policy)
			}
			if err := registry.ValidateName(name); err != nil {
				t.Fatalf("parseOptions accepted Name %q, the registry refuses it: %v", name, err)
			}
		} else if !errors.Is(err, contid.ErrInvalidArgs) {
			t.Fatalf("parseOptions: unexpected error class %v", err)
		}
		if validUnitName(name) == nil && (strings.ContainsAny(name, "/ \x00") || len(name) > maxUnitLen) {
			t.Fatalf("accepted unit name %q", name)
		}
		if validMachineName(name) == nil && strings.ContainsAny(name, "/ \x00") {
			t.Fatalf("accepted machine name %q", name)
		}
	})
}

func containsDotDot(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if el == ".." || el == "." {
			return true
		}
	}
	return false
}
