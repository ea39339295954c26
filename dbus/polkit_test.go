package dbus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// The call's ALLOW_INTERACTIVE_AUTHORIZATION flag, and only it, lets
// polkit ask the user, with the longer wait a person needs; the other
// header flags change nothing.
func TestPolkitCheckFollowsTheCallsFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   godbus.Flags
		want    uint32
		timeout time.Duration
	}{
		{"no flags", 0, 0, polkitTimeout},
		{"no auto start", godbus.FlagNoAutoStart, 0, polkitTimeout},
		{"no reply expected", godbus.FlagNoReplyExpected, 0, polkitTimeout},
		{"interactive", godbus.FlagAllowInteractiveAuthorization, polkitAllowUserInteraction, polkitInteractiveTimeout},
		{"interactive, no auto start", godbus.FlagAllowInteractiveAuthorization | godbus.FlagNoAutoStart, polkitAllowUserInteraction, polkitInteractiveTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, timeout := polkitCheck(&godbus.Message{Type: godbus.TypeMethodCall, Flags: tc.flags})
			if flags != tc.want || timeout != tc.timeout {
				t.Errorf("polkitCheck(flags %#x) = %d, %v; want %d, %v", tc.flags, flags, timeout, tc.want, tc.timeout)
			}
		})
	}
	if polkitInteractiveTimeout >= callTimeout {
		t.Errorf("an interactive polkit check may take %v, the whole call only %v", polkitInteractiveTimeout, callTimeout)
	}
}

// Only a polkit that is not there is logged as missing; a check that
// timed out or that the user dismissed is about that one call.
func TestPolkitUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no polkit on the bus", godbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, true},
		{"no polkit, as a pointer", &godbus.Error{Name: "org.freedesktop.DBus.Error.NameHasNoOwner"}, true},
		{"not activatable", godbus.Error{Name: "org.freedesktop.DBus.Error.Spawn.ServiceNotFound"}, true},
		{"connection closed", errors.New("dbus: connection closed by user"), true},
		{"timed out", fmt.Errorf("call: %w", context.DeadlineExceeded), false},
		{"cancelled", context.Canceled, false},
		{"dismissed by the user", godbus.Error{Name: "org.freedesktop.PolicyKit1.Error.Cancelled"}, false},
		{"polkit failed this check", godbus.Error{Name: "org.freedesktop.PolicyKit1.Error.Failed"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := polkitUnavailable(tc.err); got != tc.want {
				t.Errorf("polkitUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
