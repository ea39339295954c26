package registry

import (
	"errors"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/contid/contid"
)

func TestValidateCgroupPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true},
		{"/machine.slice", true},
		{"/machine.slice/machine-web\\x2d1.scope", true},
		{"/a b/c", true},
		{"", false},
		{"machine.slice", false},
		{"./machine.slice", false},
		{"/machine.slice/", false},
		{"//machine.slice", false},
		{"/machine.slice/./x", false},
		{"/machine.slice/.", false},
		{"/machine.slice/../x", false},
		{"/..", false},
		{"/a\nb", false},
		{"/a\x00b", false},
		{"/\xff", false},
		{"/p-\uFFFE", false},
		{"/p-\uFFFF", false},
		{"/p-\uFDD0", false},
		{"/p-\uFDEF", false},
		{"/p-\U0010FFFF", false},
		{"/p-\U0001FFFE", false},
		{"/p-\uFDCF", true},
		{"/p-\uFDF0", true},
		{"/p-\uFFFD", true},
		{"/p-\U0001FFFD", true},
		{"/p-\u00e9\u4e2d\U0001F600", true},
		{"/" + strings.Repeat("x", 255), true},
		{"/" + strings.Repeat("x", 256), false},
		{strings.Repeat("/x", 2048), true},
		{strings.Repeat("/x", 2048) + "/y", false},
	}
	for _, tt := range tests {
		err := ValidateCgroupPath(tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateCgroupPath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
		if err != nil && !errors.Is(err, contid.ErrInvalidArgs) {
			t.Errorf("ValidateCgroupPath(%q) = %v, not InvalidArgs", tt.path, err)
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"", true},
		{"web-1", true},
		{"café ☕", true},
		{strings.Repeat("n", 255), true},
		{strings.Repeat("n", 256), false},
		{"a\tb", false},
		{"a\x00", false},
		{"\xff", false},
		{"a\u200bb", false}, // zero-width space: not printable, would hide in a table
	}
	for _, tt := range tests {
		if err := ValidateName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		p, anc string
		want   bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", true},
		{"/a", "/", true},
		{"/", "/", true},
		{"/a/bc", "/a/b", false},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/", "/a", false},
	}
	for _, tt := range tests {
		if got := within(tt.p, tt.anc); got != tt.want {
			t.Errorf("within(%q, %q) = %v", tt.p, tt.anc, got)
		}
	}
}

// FuzzValidateCgroupPath checks that whatever the validator lets through is
// a single canonical spelling that the component-wise helpers agree on.
func FuzzValidateCgroupPath(f *testing.F) {
	for _, s := range []string{"/", "/machine.slice/a.scope", "a", "/a/../b", "//", "/a/", "/a\x00", strings.Repeat("/x", 3000), "/p-\uFFFE", "/p-\uFDD0", "/p-\U0010FFFF"} {
		f.Add(s, "/machine.slice")
	}
	f.Fuzz(func(t *testing.T, p, anc string) {
		err := ValidateCgroupPath(p)
		if err != nil {
			if !errors.Is(err, contid.ErrInvalidArgs) {
				t.Fatalf("%q: error %v is not InvalidArgs", p, err)
			}
			return
		}
		if p[0] != '/' || len(p) > maxPathLen || path.Clean(p) != p || !utf8.ValidString(p) {
			t.Fatalf("accepted %q", p)
		}
		// What sd-bus refuses in a string never gets in (unichar_is_valid).
		for _, r := range p {
			if r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE {
				t.Fatalf("accepted %q with the noncharacter %U", p, r)
			}
		}
		for _, c := range strings.Split(p, "/") {
			if c == ".." || c == "." {
				t.Fatalf("accepted %q with %q", p, c)
			}
		}
		if pp := parentPath(p); ValidateCgroupPath(pp) != nil || !within(p, pp) {
			t.Fatalf("parent %q of %q", pp, p)
		}
		if ValidateCgroupPath(anc) != nil {
			return
		}
		// within must be the component-wise prefix relation.
		pc, ac := components(p), components(anc)
		want := len(ac) <= len(pc)
		for i := 0; want && i < len(ac); i++ {
			want = pc[i] == ac[i]
		}
		if got := within(p, anc); got != want {
			t.Fatalf("within(%q, %q) = %v, want %v", p, anc, got, want)
		}
	})
}

func components(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"", "web", "a\nb", "\xff", strings.Repeat("n", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName(s)
		if err != nil {
			if !errors.Is(err, contid.ErrInvalidArgs) {
				t.Fatalf("%q: %v is not InvalidArgs", s, err)
			}
			return
		}
		if len(s) > maxNameLen || !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\n\r\t\x1b") {
			t.Fatalf("accepted %q", s)
		}
	})
}
