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
)

// ValidateCgroupPath checks a cgroup path relative to the cgroup2 root,
// such as "/machine.slice/x.scope": absolute, in canonical form (no "."
// or ".." components, no doubled or trailing slashes), valid UTF-8 with no
// control characters, within PATH_MAX and NAME_MAX. Paths are compared by
// string later, so only one spelling of each cgroup may get in, and
// contidd will not guess what "a/../b" was meant to be. The errors explain
// the common mistakes.
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
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: name is %d bytes, the limit is %d", contid.ErrInvalidArgs, len(s), maxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: name is not valid UTF-8", contid.ErrInvalidArgs)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: name %q contains a non-printable character", contid.ErrInvalidArgs, Truncate(s))
		}
	}
	return nil
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
