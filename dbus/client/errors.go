package client

import (
	"errors"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

// Sentinels for the lookups the D-Bus layer resolves itself; the registry
// owns the others.
var (
	ErrNoSuchUnit    = errors.New("no such unit")
	ErrNoSuchMachine = errors.New("no such machine")
	ErrNoSuchCgroup  = errors.New("no such cgroup")
)

// Error names of docs/DESIGN.md. They are a public contract.
const (
	ErrorPrefix          = "org.contid1."
	NameAlreadyTagged    = ErrorPrefix + "AlreadyTagged"
	NameNotDescendant    = ErrorPrefix + "NotDescendant"
	NameIDInUse          = ErrorPrefix + "IdInUse"
	NameUUIDInUse        = ErrorPrefix + "UUIDInUse"
	NameNoSuchContainer  = ErrorPrefix + "NoSuchContainer"
	NameNoSuchUnit       = ErrorPrefix + "NoSuchUnit"
	NameNoSuchMachine    = ErrorPrefix + "NoSuchMachine"
	NameNoSuchCgroup     = ErrorPrefix + "NoSuchCgroup"
	NameNotFresh         = ErrorPrefix + "NotFresh"
	NameLimitExceeded    = ErrorPrefix + "LimitExceeded"
	NameAccessDenied     = "org.freedesktop.DBus.Error.AccessDenied"
	NameInvalidArgs      = "org.freedesktop.DBus.Error.InvalidArgs"
	NameFailed           = "org.freedesktop.DBus.Error.Failed"
	NameUnknownMethod    = "org.freedesktop.DBus.Error.UnknownMethod"
	NameUnknownObject    = "org.freedesktop.DBus.Error.UnknownObject"
	NameUnknownInterface = "org.freedesktop.DBus.Error.UnknownInterface"
	NameUnknownProperty  = "org.freedesktop.DBus.Error.UnknownProperty"
	NamePropertyReadOnly = "org.freedesktop.DBus.Error.PropertyReadOnly"
	// NameLimitsExceeded: a message larger than contidd reads (64 KiB on
	// the peer-to-peer socket), refused before it is decoded.
	NameLimitsExceeded = "org.freedesktop.DBus.Error.LimitsExceeded"
)

// InteractiveAuthRequired is in the text of the AccessDenied error of a
// tag call that polkit would have allowed once the user authenticated,
// when the call did not carry ALLOW_INTERACTIVE_AUTHORIZATION: the words
// systemd uses for the same case. The error name stays AccessDenied, the
// one a refused tag has always had; the text tells a person to try again
// where they can be asked.
const InteractiveAuthRequired = "Interactive authentication required."

// NeedsInteractiveAuth reports whether err is such a refusal.
func NeedsInteractiveAuth(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Name == NameAccessDenied && strings.Contains(re.Message, InteractiveAuthRequired)
}

// errorNames is the one place a Go error becomes a D-Bus error name; the
// client maps back through the same table.
var errorNames = []struct {
	err  error
	name string
}{
	{contid.ErrAlreadyTagged, NameAlreadyTagged},
	{contid.ErrNotDescendant, NameNotDescendant},
	{contid.ErrIDInUse, NameIDInUse},
	{contid.ErrUUIDInUse, NameUUIDInUse},
	{contid.ErrNoSuchContainer, NameNoSuchContainer},
	{contid.ErrNotFresh, NameNotFresh},
	{contid.ErrLimitExceeded, NameLimitExceeded},
	{contid.ErrInvalidArgs, NameInvalidArgs},
	{contid.ErrAccessDenied, NameAccessDenied},
	{ErrNoSuchUnit, NameNoSuchUnit},
	{ErrNoSuchMachine, NameNoSuchMachine},
	{ErrNoSuchCgroup, NameNoSuchCgroup},
}

// NameOf is the D-Bus error name of err: the name of the first sentinel
// it wraps, or org.freedesktop.DBus.Error.Failed.
func NameOf(err error) string {
	for _, e := range errorNames {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return NameFailed
}

// RemoteError is what the client returns for a D-Bus error reply. It
// unwraps to the matching sentinel, so callers use errors.Is exactly as
// they would in-process.
type RemoteError struct {
	Name    string
	Message string
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return e.Name
	}
	return e.Message
}

// Unwrap returns the sentinel named by the error, if any.
func (e *RemoteError) Unwrap() error {
	for _, en := range errorNames {
		if en.name == e.Name {
			return en.err
		}
	}
	return nil
}

func fromDBusError(err error) error {
	var de godbus.Error
	if errors.As(err, &de) {
		re := &RemoteError{Name: de.Name}
		if len(de.Body) > 0 {
			re.Message, _ = de.Body[0].(string)
		}
		return re
	}
	var pde *godbus.Error
	if errors.As(err, &pde) {
		re := &RemoteError{Name: pde.Name}
		if len(pde.Body) > 0 {
			re.Message, _ = pde.Body[0].(string)
		}
		return re
	}
	return err
}
