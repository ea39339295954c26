package contid

import (
	"fmt"
	"path"
	"strings"
)

// Bounds of a ScopePattern's fixed parts, which the kernel's autotag
// program compares byte by byte in fixed-size buffers.
const (
	MaxScopePrefix = 32
	MaxScopeSuffix = 16
)

// ScopePattern names the containers a manager creates among the other
// children of a shared parent, such as Docker's
// /system.slice/docker-<ID>.scope beside every host service: the kernel
// autotags a new child of Parent whose name starts with Prefix and ends
// with Suffix, and no other child.
type ScopePattern struct {
	Parent string // absolute cgroup path, cleaned
	Prefix string
	Suffix string
}

// ParseScopePattern parses PARENT/PREFIX*SUFFIX, for example
// /system.slice/docker-*.scope. The one '*' stands for at least one byte
// of the last component. A pattern with no fixed part would make every
// child of its parent a container, which AutotagParents says plainly, so
// it is refused; so is a suffix that ends in ".slice", which names no
// container (a slice never holds processes of its own).
func ParseScopePattern(s string) (ScopePattern, error) {
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	parent, last := path.Split(s)
	parent = path.Clean(parent)
	prefix, suffix, found := strings.Cut(last, "*")
	switch {
	case !found:
		return ScopePattern{}, fmt.Errorf("scope pattern %q: no '*' in its last component", s)
	case strings.Contains(suffix, "*"):
		return ScopePattern{}, fmt.Errorf("scope pattern %q: more than one '*'", s)
	case strings.ContainsAny(parent, "*?["):
		return ScopePattern{}, fmt.Errorf("scope pattern %q: the parent must be a plain path", s)
	case prefix == "" && suffix == "":
		return ScopePattern{}, fmt.Errorf("scope pattern %q: matches every child; list its parent in AutotagParents instead", s)
	case len(prefix) > MaxScopePrefix:
		return ScopePattern{}, fmt.Errorf("scope pattern %q: prefix longer than %d bytes", s, MaxScopePrefix)
	case len(suffix) > MaxScopeSuffix:
		return ScopePattern{}, fmt.Errorf("scope pattern %q: suffix longer than %d bytes", s, MaxScopeSuffix)
	case strings.HasSuffix(suffix, ".slice"):
		return ScopePattern{}, fmt.Errorf("scope pattern %q: a slice is no container", s)
	}
	return ScopePattern{Parent: parent, Prefix: prefix, Suffix: suffix}, nil
}

// String gives the pattern back in the form ParseScopePattern reads.
func (p ScopePattern) String() string {
	return path.Join(p.Parent, p.Prefix+"*"+p.Suffix)
}

// Matches reports whether cgroup (an absolute cgroup path) is a child of
// the pattern's parent with a matching name.
func (p ScopePattern) Matches(cgroup string) bool {
	parent, name := path.Split(path.Clean(cgroup))
	return path.Clean(parent) == p.Parent && p.MatchesName(name)
}

// MatchesName reports whether a child's name matches, as the kernel
// compares it: the prefix, at least one byte, the suffix.
func (p ScopePattern) MatchesName(name string) bool {
	return len(name) > len(p.Prefix)+len(p.Suffix) &&
		strings.HasPrefix(name, p.Prefix) && strings.HasSuffix(name, p.Suffix)
}
