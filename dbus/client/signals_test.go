package client

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestParseSignal(t *testing.T) {
	p := ContainerPath(42)
	tests := []struct {
		name string
		sig  godbus.Signal
		want Signal
		ok   bool
	}{
		{"new", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.ContainerNew", Body: []any{uint64(42), p}},
			Signal{Member: "ContainerNew", ID: 42, Container: p}, true},
		{"removed", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.ContainerRemoved", Body: []any{uint64(42), p}},
			Signal{Member: "ContainerRemoved", ID: 42, Container: p}, true},
		{"tamper", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.TamperDenied", Body: []any{uint64(3), uint32(4711), "bpf"}},
			Signal{Member: "TamperDenied", ID: 3, PID: 4711, Operation: "bpf"}, true},
		{"other path", godbus.Signal{Path: "/org/contid1/container/42", Name: "org.contid1.Manager.ContainerNew", Body: []any{uint64(42), p}}, Signal{}, false},
		{"other member", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.Frob", Body: []any{uint64(42), p}}, Signal{}, false},
		{"other interface", godbus.Signal{Path: ManagerPath, Name: "org.freedesktop.DBus.NameAcquired", Body: []any{":1.2"}}, Signal{}, false},
		{"wrong signature", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.ContainerNew", Body: []any{"42", p}}, Signal{}, false},
		{"too few arguments", godbus.Signal{Path: ManagerPath, Name: "org.contid1.Manager.TamperDenied", Body: []any{uint64(3)}}, Signal{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseSignal(&tt.sig)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
