package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/contid/contid"
)

// The cgroups that hold the host, not a container, are refused whoever
// asks, with a message that says why; their neighbours are not.
func TestNeverTaggable(t *testing.T) {
	const own = "/system.slice/contidd.service"
	// A caller whose own cgroup is none of the targets, so the
	// self-tagging rule does not answer first.
	far := Caller{PID: 100, Start: 5000, Privileged: true, Cgroup: "/user.slice/user-0.slice/session-1.scope"}
	tests := []struct {
		path string
		why  string // "" when the cgroup may be tagged
	}{
		{"/", "root cgroup"},
		{"/init.scope", "PID 1"},
		{"/machine.slice/machine-web.scope/init.scope", "PID 1"},
		{"/system.slice", "slice"},
		{"/machine.slice", "slice"},
		{"/machine.slice/machine-pods.slice", "slice"},
		{own, "contidd itself"},
		{"/system.slice/contidd.service/helper", ""},
		{"/machine.slice/machine-web.scope", ""},
		{"/machine.slice/slice.scope", ""},
		{"/system.slice/contidd.services", ""},
		{"/init.scope.d", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			h := newHarness(t, Config{OwnCgroup: own})
			h.alive.set(far.PID, far.Start, true)
			h.checkpoint()
			_, err := h.r.TagCgroup(far, 0, target(tt.path), Options{})
			if tt.why == "" {
				if err != nil {
					t.Fatalf("TagCgroup(%s): %v", tt.path, err)
				}
				return
			}
			if !errors.Is(err, contid.ErrInvalidArgs) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("TagCgroup(%s) = %v, want InvalidArgs saying %q", tt.path, err, tt.why)
			}
			if cerr := h.r.CheckTaggable(tt.path); !errors.Is(cerr, contid.ErrInvalidArgs) {
				t.Fatalf("CheckTaggable(%s) = %v", tt.path, cerr)
			}
			if h.k.tagged != h.kernelTags || len(h.r.List()) != h.records {
				t.Fatal("a refused tag reached the kernel or the records")
			}
		})
	}
	// An ancestor of contidd's cgroup is refused even where it is no slice.
	h := newHarness(t, Config{OwnCgroup: "/contid-test/daemon"})
	if _, err := h.r.TagCgroup(far, 0, target("/contid-test"), Options{}); !errors.Is(err, contid.ErrInvalidArgs) || !strings.Contains(err.Error(), "contidd itself") {
		t.Fatalf("ancestor of contidd's cgroup: %v", err)
	}
	// A fresh process inside contidd's cgroup is never tagged either.
	p := ProcessTarget{PID: 300, Start: 9, Cgroup: "/contid-test/daemon", PIDFD: 3}
	if _, err := h.r.TagProcess(far, 0, p, Options{}); !errors.Is(err, contid.ErrInvalidArgs) || !strings.Contains(err.Error(), "contidd's own cgroup") {
		t.Fatalf("process in contidd's cgroup: %v", err)
	}
	p.Cgroup = "/contid-test/other"
	if _, err := h.r.TagProcess(far, 0, p, Options{}); err != nil {
		t.Fatalf("process next to contidd's cgroup: %v", err)
	}
}

// Only a privileged caller outside every container, or a nested
// orchestrator for containers inside its own, may name a container the
// kernel tagged; a name once given stays.
func TestName(t *testing.T) {
	autotag := func(h *harness, id contid.ID, chain contid.Chain, path string) {
		t.Helper()
		if _, _, err := h.r.Adopt(contid.Tag{Chain: chain, Flags: contid.FlagAutotag}, Cgroup{Path: path, ID: cgid(path)}); err != nil {
			t.Fatal(err)
		}
	}
	type setup struct {
		h       *harness
		outside contid.ID // top-level, autotagged
		inside  contid.ID // autotagged, nested in the orchestrator's container
		nested  Caller    // a root process in container X (AllowNesting)
		plain   Caller    // a root process in container Y (no nesting)
	}
	prepare := func(t *testing.T) setup {
		h := newHarness(t, Config{})
		x := h.mustTag(orchestrator, 0, "/machine.slice/x.scope", Options{AllowNesting: true})
		y := h.mustTag(orchestrator, 0, "/machine.slice/y.scope", Options{})
		autotag(h, 500, contid.Chain{500}, "/machine.slice/machine-victim.scope")
		autotag(h, 501, contid.Chain{501, x.ID}, "/machine.slice/x.scope/pods/inner")
		s := setup{h: h, outside: 500, inside: 501, nested: h.callerIn(x, 700), plain: h.callerIn(y, 800)}
		s.nested.Cgroup = "/machine.slice/x.scope/orch"
		s.plain.Cgroup = "/machine.slice/y.scope/payload"
		h.checkpoint()
		return s
	}
	tests := []struct {
		name   string
		caller func(s setup) Caller
		id     func(s setup) contid.ID
		want   error
	}{
		{"host orchestrator names a top-level machine", func(setup) Caller { return orchestrator }, func(s setup) contid.ID { return s.outside }, nil},
		{"host orchestrator names a nested one", func(setup) Caller { return orchestrator }, func(s setup) contid.ID { return s.inside }, nil},
		{"nested orchestrator inside its subtree", func(s setup) Caller { return s.nested }, func(s setup) contid.ID { return s.inside }, nil},
		{"nested orchestrator outside its subtree", func(s setup) Caller { return s.nested }, func(s setup) contid.ID { return s.outside }, contid.ErrNotDescendant},
		{"container without nesting", func(s setup) Caller { return s.plain }, func(s setup) contid.ID { return s.outside }, contid.ErrNotDescendant},
		{"unprivileged host process", func(setup) Caller {
			return Caller{PID: 900, Start: 1, UID: 1000, Cgroup: "/user.slice/u.scope"}
		}, func(s setup) contid.ID { return s.outside }, contid.ErrAccessDenied},
		{"an owned container is named by its owner only", func(setup) Caller { return orchestrator }, func(s setup) contid.ID {
			return s.h.mustTag(orchestrator, 0, "/machine.slice/owned.scope", Options{}).ID
		}, contid.ErrAlreadyTagged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := prepare(t)
			id := tt.id(s)
			s.h.checkpoint()
			c, err := s.h.r.Name(tt.caller(s), id, Options{Name: "web"}, "machine-web.scope")
			wantErr(t, err, tt.want)
			got, _ := s.h.r.Get(id)
			if tt.want != nil {
				if got.Name == "web" {
					t.Fatalf("a refused Name changed the record: %+v", got)
				}
				return
			}
			if c.Name != "web" || got.Name != "web" || got.Unit != "machine-web.scope" {
				t.Fatalf("after Name: returned %+v, recorded %+v", c, got)
			}
			// Named once: the same name again is fine, another is not,
			// and the unit is not replaced.
			if _, err := s.h.r.Name(tt.caller(s), id, Options{Name: "web"}, "other.scope"); err != nil {
				t.Fatalf("same name again: %v", err)
			}
			if again, _ := s.h.r.Get(id); again.Unit != "machine-web.scope" {
				t.Fatalf("unit replaced: %+v", again)
			}
			if _, err := s.h.r.Name(orchestrator, id, Options{Name: "other"}, ""); !errors.Is(err, contid.ErrAlreadyTagged) {
				t.Fatalf("renaming: %v, want AlreadyTagged", err)
			}
		})
	}
}
