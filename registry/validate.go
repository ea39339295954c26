package registry

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/contid/contid"
)

const (
	// maxPathLen is PATH_MAX: no cgroup path the kernel accepts is longer.
	maxPathLen = 4096
	// maxComponentLen is NAME_MAX for one cgroup directory name.
	maxComponentLen = 255
	// maxNameLen bounds container names and unit names (machined and
	// systemd use far shorter ones; the bound keeps records small).
	maxNameLen = 255
	// maxManagerLen bounds a manager's name, a short word.
	maxManagerLen = 64
	// maxImageLen bounds an image reference: a registry host, a path of
	// a few components, a tag and an "@sha256:" digest fit well within.
	maxImageLen = 1024
)

// ValidateCgroupPath checks a cgroup path relative to the cgroup2 root,
// such as "/machine.slice/x.scope": absolute, in canonical form (no "."
// or ".." components, no doubled or trailing slashes), valid UTF-8 with no
// control characters and no Unicode noncharacters, within PATH_MAX and
// NAME_MAX. Paths are compared by string later, so only one spelling of
// each cgroup may get in, and contidd will not guess what "a/../b" was
// meant to be. The errors explain the common mistakes.
//
// Paths go out in D-Bus strings, to every user who lists containers.
// sd-bus (busctl, systemd's own tools) refuses a whole message with a
// noncharacter in any string, so one such path would break every listing
// for everyone.
func ValidateCgroupPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty cgroup path", contid.ErrInvalidArgs)
	case len(p) > maxPathLen:
		return fmt.Errorf("%w: cgroup path is %d bytes, the limit is %d", contid.ErrInvalidArgs, len(p), maxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("%w: cgroup path is not valid UTF-8 text", contid.ErrInvalidArgs)
	case p[0] != '/':
		return fmt.Errorf("%w: cgroup path %q must be absolute, relative to the cgroup2 root (e.g. /machine.slice/x.scope)", contid.ErrInvalidArgs, Truncate(p))
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: cgroup path %q contains a control character", contid.ErrInvalidArgs, Truncate(p))
		}
		if isNoncharacter(r) {
			return fmt.Errorf("%w: cgroup path %q contains the Unicode noncharacter %U, which D-Bus clients refuse", contid.ErrInvalidArgs, Truncate(p), r)
		}
	}
	if p == "/" {
		return nil
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == "." || c == ".." {
			return fmt.Errorf("%w: cgroup path %q contains %q", contid.ErrInvalidArgs, Truncate(p), c)
		}
		if len(c) > maxComponentLen {
			return fmt.Errorf("%w: cgroup path %q has a component longer than %d bytes", contid.ErrInvalidArgs, Truncate(p), maxComponentLen)
		}
	}
	if c := path.Clean(p); c != p {
		return fmt.Errorf("%w: cgroup path %q is not canonical (did you mean %q?)", contid.ErrInvalidArgs, Truncate(p), Truncate(c))
	}
	return nil
}

// isNoncharacter reports the code points Unicode keeps out of interchange:
// U+FDD0..U+FDEF and the last two of each plane. Surrogates and values
// past U+10FFFF are not valid UTF-8 and are refused before.
func isNoncharacter(r rune) bool {
	return r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE
}

// Truncate shortens s for an error message, at a rune boundary: what a
// caller sent may be long, and the message must stay readable.
func Truncate(s string) string {
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

// ValidateName checks a container or unit name: at most 255 bytes of
// printable UTF-8. Empty means "none".
func ValidateName(s string) error {
	return validatePrintable("name", s, maxNameLen)
}

// ValidateManager checks the name of the container manager that started a
// container ("podman", "nspawn", "api"): a short token of letters, digits,
// '.', '_' and '-', so that it can be matched in journal queries and
// printed in a column without quoting. Empty means "none".
func ValidateManager(s string) error {
	if len(s) > maxManagerLen {
		return fmt.Errorf("%w: manager is %d bytes, the limit is %d", contid.ErrInvalidArgs, len(s), maxManagerLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: manager %q may hold only letters, digits, '.', '_' and '-'", contid.ErrInvalidArgs, Truncate(s))
		}
	}
	return nil
}

// ValidateImage checks the image a container runs, as its manager names
// it (a reference with a digest, or a root directory): printable UTF-8
// within 1024 bytes, room for a long repository path, tag and sha256
// digest. Empty means "none".
func ValidateImage(s string) error {
	return validatePrintable("image", s, maxImageLen)
}

// ValidateManagerID checks the manager's own ID for a container (podman's
// 64 hex digits, a machine UUID): printable UTF-8 within 255 bytes. Empty
// means "none".
func ValidateManagerID(s string) error {
	return validatePrintable("manager ID", s, maxNameLen)
}

// validatePrintable is the common bound of the free-text metadata: it
// goes into journal fields, D-Bus strings and terminal columns, so no
// control characters, and a length that keeps records small.
func validatePrintable(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", contid.ErrInvalidArgs, what, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", contid.ErrInvalidArgs, what)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s %q contains a non-printable character", contid.ErrInvalidArgs, what, Truncate(s))
		}
	}
	return nil
}

// validateLabels checks the metadata options together, naming the one
// that failed.
func (o Options) validateLabels() error {
	if err := ValidateName(o.Name); err != nil {
		return err
	}
	if err := ValidateManager(o.Manager); err != nil {
		return err
	}
	if err := ValidateImage(o.Image); err != nil {
		return err
	}
	if err := ValidateUUID(o.UUID); err != nil {
		return err
	}
	return ValidateManagerID(o.ManagerID)
}

// within reports whether p is anc or lies below it, comparing whole path
// components: /a/b is within /a, /a/bc is not. Both must be valid paths.
func within(p, anc string) bool {
	if anc == "/" || p == anc {
		return true
	}
	return len(p) > len(anc) && p[len(anc)] == '/' && p[:len(anc)] == anc
}

// parentPath is the cgroup one level up; "/" for top-level cgroups and
// for "/" itself.
func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}
