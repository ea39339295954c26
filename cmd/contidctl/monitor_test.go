package main

import (
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
)

func TestSignalLines(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 10, 1, 123456000, time.UTC)
	tests := []struct {
		sig        client.Signal
		text, json string
	}{
		{client.Signal{Member: "ContainerNew", ID: 42, Container: "/org/contid1/container/42"},
			"2026-12-06 05:10:01.123456 UTC ContainerNew id=42 object=/org/contid1/container/42\n",
			`{"timestamp_usec":1796533801123456,"signal":"ContainerNew","id":42,"object":"/org/contid1/container/42"}` + "\n"},
		{client.Signal{Member: "ContainerRemoved", ID: 7, Container: "/org/contid1/container/7"},
			"2026-12-06 05:10:01.123456 UTC ContainerRemoved id=7 object=/org/contid1/container/7\n",
			`{"timestamp_usec":1796533801123456,"signal":"ContainerRemoved","id":7,"object":"/org/contid1/container/7"}` + "\n"},
		{client.Signal{Member: "TamperDenied", ID: 3, PID: 4711, Operation: "bpf"},
			"2026-12-06 05:10:01.123456 UTC TamperDenied id=3 pid=4711 operation=bpf\n",
			`{"timestamp_usec":1796533801123456,"signal":"TamperDenied","id":3,"pid":4711,"operation":"bpf"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.sig.Member, func(t *testing.T) {
			for _, f := range []jsonFormat{jsonOff, jsonShort} {
				var out strings.Builder
				g := globals{out: &out, json: f}
				if err := g.printSignal(at, tt.sig); err != nil {
					t.Fatal(err)
				}
				want := tt.text
				if f == jsonShort {
					want = tt.json
				}
				if out.String() != want {
					t.Errorf("--json=%s: got %q, want %q", f, out.String(), want)
				}
			}
		})
	}
}
