package dbus

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

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
// cannot silently drop AllowNesting or a JoinPolicy.
func parseOptions(opts map[string]godbus.Variant) (registry.Options, error) {
	var o registry.Options
	for k, v := range opts {
		switch k {
		case "Name":
			s, ok := v.Value().(string)
			if !ok {
				return o, fmt.Errorf("%w: option Name must be a string (s), got %s", contid.ErrInvalidArgs, v.Signature())
			}
			if err := validName(s); err != nil {
				return o, err
			}
			o.Name = s
		case "AllowNesting":
			b, ok := v.Value().(bool)
			if !ok {
				return o, fmt.Errorf("%w: option AllowNesting must be a boolean (b), got %s", contid.ErrInvalidArgs, v.Signature())
			}
			o.AllowNesting = b
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
				return o, fmt.Errorf("%w: JoinPolicy must be \"tag\" or \"ignore\", got %q", contid.ErrInvalidArgs, truncate(s))
			}
		default:
			return o, fmt.Errorf("%w: unknown option %q (known: Name, AllowNesting, JoinPolicy)", contid.ErrInvalidArgs, truncate(k))
		}
	}
	return o, nil
}

// validName accepts what is printable in a table and a journal field.
func validName(s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", contid.ErrInvalidArgs, maxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: name is not valid UTF-8", contid.ErrInvalidArgs)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: name contains control characters", contid.ErrInvalidArgs)
		}
	}
	return registry.ValidateName(s)
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

// cleanCgroupPath validates a cgroup path relative to the cgroup2 root,
// such as "/machine.slice/x.scope". It must already be in canonical form:
// contidd will not guess what "a/../b" was meant to be.
func cleanCgroupPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty cgroup path", contid.ErrInvalidArgs)
	case len(p) > maxPathLen:
		return "", fmt.Errorf("%w: cgroup path longer than %d bytes", contid.ErrInvalidArgs, maxPathLen)
	case !utf8.ValidString(p) || strings.ContainsRune(p, 0):
		return "", fmt.Errorf("%w: cgroup path is not valid UTF-8 text", contid.ErrInvalidArgs)
	case p[0] != '/':
		return "", fmt.Errorf("%w: cgroup path %q must be absolute, relative to the cgroup2 root (e.g. /machine.slice/x.scope)", contid.ErrInvalidArgs, truncate(p))
	}
	for _, el := range strings.Split(p[1:], "/") {
		if el == "." || el == ".." {
			return "", fmt.Errorf("%w: cgroup path %q contains %q", contid.ErrInvalidArgs, truncate(p), el)
		}
	}
	if c := path.Clean(p); c != p {
		return "", fmt.Errorf("%w: cgroup path %q is not canonical (did you mean %q?)", contid.ErrInvalidArgs, truncate(p), truncate(c))
	}
	// The registry's rule decides; the checks above only explain the
	// common mistakes better.
	if err := registry.ValidateCgroupPath(p); err != nil {
		return "", err
	}
	return p, nil
}

// validUnitName accepts systemd unit names with the types that own a
// cgroup. Unit names are ASCII by systemd's own rules.
func validUnitName(u string) error {
	if u == "" || len(u) > maxUnitLen {
		return fmt.Errorf("%w: unit name must be 1-%d bytes", contid.ErrInvalidArgs, maxUnitLen)
	}
	dot := strings.LastIndexByte(u, '.')
	if dot <= 0 {
		return fmt.Errorf("%w: unit name %q has no type suffix (.service, .scope, ...)", contid.ErrInvalidArgs, truncate(u))
	}
	switch u[dot:] {
	case ".service", ".scope", ".slice", ".socket", ".mount", ".swap":
	default:
		return fmt.Errorf("%w: unit %q is not of a type that has a cgroup", contid.ErrInvalidArgs, truncate(u))
	}
	for i := 0; i < dot; i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return fmt.Errorf("%w: unit name %q contains invalid characters", contid.ErrInvalidArgs, truncate(u))
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
			return fmt.Errorf("%w: machine name %q contains invalid characters", contid.ErrInvalidArgs, truncate(m))
		}
	}
	return nil
}

// truncate keeps error messages readable when the input is huge.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
