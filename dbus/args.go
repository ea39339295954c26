package dbus

import (
	"fmt"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// Limits on caller-supplied strings: far above any real name, low enough
// that a hostile caller cannot make contidd store megabytes per record.
const (
	maxPathLen = 4096
	maxNameLen = 255
	maxUnitLen = 256
)

// parseOptions turns the a{sv} of the Tag* methods into registry options.
// Unknown keys and wrong types are refused rather than ignored, so a typo
// cannot silently drop AllowNesting, AllowBPF or a JoinPolicy.
func parseOptions(opts map[string]godbus.Variant) (registry.Options, error) {
	var o registry.Options
	for k, v := range opts {
		switch k {
		case "UUID":
			// Checked by the registry, which also knows which UUIDs
			// living containers hold (registry.ValidateUUID).
			str, ok := v.Value().(string)
			if !ok {
				return o, fmt.Errorf("%w: option UUID must be a string (s), got %s", contid.ErrInvalidArgs, v.Signature())
			}
			o.UUID = str
		case "Name", "Manager", "Image", "ManagerID":
			str, ok := v.Value().(string)
			if !ok {
				return o, fmt.Errorf("%w: option %s must be a string (s), got %s", contid.ErrInvalidArgs, k, v.Signature())
			}
			if err := setLabel(&o, k, str); err != nil {
				return o, err
			}
		case "AllowNesting", "AllowBPF", "AllowModules":
			b, ok := v.Value().(bool)
			if !ok {
				return o, fmt.Errorf("%w: option %s must be a boolean (b), got %s", contid.ErrInvalidArgs, k, v.Signature())
			}
			switch k {
			case "AllowNesting":
				o.AllowNesting = b
			case "AllowBPF":
				o.AllowBPF = b
			default:
				o.AllowModules = b
			}
		case "JoinPolicy":
			s, ok := v.Value().(string)
			if !ok {
				return o, fmt.Errorf("%w: option JoinPolicy must be a string (s), got %s", contid.ErrInvalidArgs, v.Signature())
			}
			switch s {
			case "tag":
				o.JoinIgnore = false
			case "ignore":
				o.JoinIgnore = true
			default:
				return o, fmt.Errorf("%w: JoinPolicy must be \"tag\" or \"ignore\", got %q", contid.ErrInvalidArgs, registry.Truncate(s))
			}
		default:
			return o, fmt.Errorf("%w: unknown option %q (known: Name, Manager, Image, ManagerID, UUID, AllowNesting, AllowBPF, AllowModules, JoinPolicy)", contid.ErrInvalidArgs, registry.Truncate(k))
		}
	}
	return o, nil
}

// setLabel validates and stores one of the string options that describe
// a container.
func setLabel(o *registry.Options, k, v string) error {
	switch k {
	case "Name":
		o.Name = v
		return registry.ValidateName(v)
	case "Manager":
		o.Manager = v
		return registry.ValidateManager(v)
	case "Image":
		o.Image = v
		return registry.ValidateImage(v)
	default:
		o.ManagerID = v
		return registry.ValidateManagerID(v)
	}
}

// validTagID checks the requested ID: 0 asks for allocation; the all-ones
// value is the kernel series' "unset" and never valid.
func validTagID(id uint64) error {
	if contid.ID(id) == contid.Invalid {
		return fmt.Errorf("%w: ID %d is reserved (it means \"unset\")", contid.ErrInvalidArgs, id)
	}
	return nil
}

// validLookupID checks an ID that must name an existing container: 0
// cannot.
func validLookupID(id uint64) error {
	if contid.ID(id) == contid.Unset || contid.ID(id) == contid.Invalid {
		return fmt.Errorf("%w: %d is not a container ID", contid.ErrInvalidArgs, id)
	}
	return nil
}

// validUnitName accepts systemd unit names with the types that own a
// cgroup. Unit names are ASCII by systemd's own rules.
func validUnitName(u string) error {
	if u == "" || len(u) > maxUnitLen {
		return fmt.Errorf("%w: unit name must be 1-%d bytes", contid.ErrInvalidArgs, maxUnitLen)
	}
	dot := strings.LastIndexByte(u, '.')
	if dot <= 0 {
		return fmt.Errorf("%w: unit name %q has no type suffix (.service, .scope, ...)", contid.ErrInvalidArgs, registry.Truncate(u))
	}
	switch u[dot:] {
	case ".service", ".scope", ".slice", ".socket", ".mount", ".swap":
	default:
		return fmt.Errorf("%w: unit %q is not of a type that has a cgroup", contid.ErrInvalidArgs, registry.Truncate(u))
	}
	for i := 0; i < dot; i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return fmt.Errorf("%w: unit name %q contains invalid characters", contid.ErrInvalidArgs, registry.Truncate(u))
		}
	}
	return nil
}

// validMachineName follows machined's hostname-like rule.
func validMachineName(m string) error {
	if m == "" || len(m) > 64 {
		return fmt.Errorf("%w: machine name must be 1-64 bytes", contid.ErrInvalidArgs)
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: machine name %q contains invalid characters", contid.ErrInvalidArgs, registry.Truncate(m))
		}
	}
	return nil
}
