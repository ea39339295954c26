package registry

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/contid/contid"
)

// TestTagRules drives each tagging rule of docs/DESIGN.md through the public
// API: one row per rule, with the state it needs set up first.
func TestTagRules(t *testing.T) {
	nest := Options{AllowNesting: true}
	type call func(h *harness) (*Container, error)
	tagAs := func(c Caller, id contid.ID, path string, o Options) call {
		return func(h *harness) (*Container, error) { return h.r.TagCgroup(c, id, target(path), o) }
	}
	tag := func(path string) call { return tagAs(orchestrator, contid.Unset, path, Options{}) }
	// nested sets up A (nesting allowed) at /machine.slice/a.scope and a
	// caller inside it, then runs the call that caller makes.
	nested := func(aOpts Options, f func(h *harness, in Caller) (*Container, error)) call {
		return func(h *harness) (*Container, error) {
			a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", aOpts)
			in := h.callerIn(a, 700)
			in.Cgroup = "/machine.slice/a.scope/payload"
			return f(h, in)
		}
	}
	proc := func(pid uint32, cgroup string) ProcessTarget {
		return ProcessTarget{PID: pid, Start: uint64(pid) * 7, Cgroup: cgroup, PIDFD: int(pid)}
	}

	tests := []struct {
		name    string
		cfg     Config
		call    call
		want    error
		wantMsg string
		chain   string // chain of the new container when want is nil
		grants  contid.Flags
	}{
		{name: "top level", call: tag("/machine.slice/a.scope"), chain: "1"},
		{name: "unprivileged", want: contid.ErrAccessDenied,
			call: tagAs(Caller{PID: 9, Cgroup: "/user.slice"}, 0, "/machine.slice/a.scope", Options{})},
		{name: "caller cgroup unknown", want: contid.ErrAccessDenied,
			call: tagAs(Caller{PID: 9, Privileged: true}, 0, "/machine.slice/a.scope", Options{})},
		{name: "u64 max", want: contid.ErrInvalidArgs, call: tagAs(orchestrator, contid.Invalid, "/machine.slice/a.scope", Options{})},
		{name: "relative path", want: contid.ErrInvalidArgs, call: tag("machine.slice/a.scope")},
		{name: "dotdot", want: contid.ErrInvalidArgs, call: tag("/machine.slice/../a.scope")},
		{name: "unclean", want: contid.ErrInvalidArgs, call: tag("/machine.slice//a.scope")},
		{name: "trailing slash", want: contid.ErrInvalidArgs, call: tag("/machine.slice/a.scope/")},
		{name: "huge path", want: contid.ErrInvalidArgs, call: tag("/" + strings.Repeat("a/", 2100) + "b")},
		{name: "no cgroup id", want: contid.ErrInvalidArgs, call: func(h *harness) (*Container, error) {
			return h.r.TagCgroup(orchestrator, 0, CgroupTarget{Path: "/machine.slice/a.scope"}, Options{})
		}},
		{name: "huge name", want: contid.ErrInvalidArgs,
			call: tagAs(orchestrator, 0, "/machine.slice/a.scope", Options{Name: strings.Repeat("n", 256)})},
		{name: "control char in name", want: contid.ErrInvalidArgs,
			call: tagAs(orchestrator, 0, "/machine.slice/a.scope", Options{Name: "a\nb"})},

		// No self-tagging.
		{name: "own cgroup", want: contid.ErrNotDescendant, call: tag(orchestrator.Cgroup)},
		{name: "ancestor of own cgroup", want: contid.ErrNotDescendant,
			call: tagAs(Caller{PID: 9, Start: 1, Privileged: true, Cgroup: "/machine.slice/a.scope/payload"}, 0, "/machine.slice/a.scope", Options{})},
		{name: "slice above own cgroup", want: contid.ErrInvalidArgs, wantMsg: "is a slice", call: tag("/system.slice")},
		{name: "root cgroup", want: contid.ErrInvalidArgs, wantMsg: "root cgroup", call: tag("/")},
		{name: "prefix is not ancestor", call: tag("/system.slice/orch"), chain: "1"},
		{name: "tagged caller tags itself", want: contid.ErrNotDescendant, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagCgroup(in, 0, target(in.Cgroup), Options{})
		})},
		{name: "process tags itself", want: contid.ErrNotDescendant, call: func(h *harness) (*Container, error) {
			return h.r.TagProcess(orchestrator, 0, proc(orchestrator.PID, orchestrator.Cgroup), Options{})
		}},

		// Write-once.
		{name: "same cgroup twice", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
			other := Caller{PID: 200, Start: 1, Privileged: true, Cgroup: "/system.slice/other.service"}
			return h.r.TagCgroup(other, 0, target("/machine.slice/a.scope"), Options{})
		}},
		{name: "same cgroup id under another path", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
			return h.r.TagCgroup(orchestrator, 0, CgroupTarget{Path: "/machine.slice/b.scope", ID: cgid("/machine.slice/a.scope")}, Options{Name: "x"})
		}},
		{name: "inside container without nesting", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope/inner"), Options{})
		}},
		{name: "above a container", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope/inner", Options{})
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope"), Options{})
		}},
		{name: "inside container with nesting", chain: "2,^1", call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", nest)
			return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope/inner"), Options{})
		}},
		{name: "process already tagged", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			if _, err := h.r.TagProcess(orchestrator, 0, proc(300, "/system.slice/orch.service"), Options{}); err != nil {
				return nil, err
			}
			h.checkpoint()
			other := Caller{PID: 200, Start: 1, Privileged: true, Cgroup: "/system.slice/other.service"}
			return h.r.TagProcess(other, 0, proc(300, "/system.slice/orch.service"), Options{})
		}},
		{name: "process inside container without nesting", want: contid.ErrAlreadyTagged, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
			return h.r.TagProcess(orchestrator, 0, proc(300, "/machine.slice/a.scope"), Options{})
		}},
		{name: "process top level", chain: "1", call: func(h *harness) (*Container, error) {
			return h.r.TagProcess(orchestrator, 0, proc(300, "/system.slice/orch.service"), Options{})
		}},

		// Nesting by a tagged caller.
		{name: "tagged caller inside own subtree", chain: "2,^1", call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{})
		})},
		{name: "tagged caller outside subtree", want: contid.ErrNotDescendant, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagCgroup(in, 0, target("/machine.slice/b.scope"), Options{})
		})},
		{name: "tagged caller sibling with common prefix", want: contid.ErrNotDescendant, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagCgroup(in, 0, target("/machine.slice/a.scopex/child"), Options{})
		})},
		{name: "tagged caller without AllowNesting", want: contid.ErrAccessDenied, call: nested(Options{}, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{})
		})},
		{name: "tagged caller in unknown container", want: contid.ErrNotDescendant, call: func(h *harness) (*Container, error) {
			in := Caller{PID: 700, Start: 1, Privileged: true, Container: 99, Cgroup: "/machine.slice/z.scope"}
			return h.r.TagCgroup(in, 0, target("/machine.slice/z.scope/child"), Options{})
		}},
		{name: "tagged caller under deeper container", chain: "3,^2,^1", call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope/b", nest)
			return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/b/c"), Options{})
		})},
		{name: "tagged caller under deeper container without nesting", want: contid.ErrAlreadyTagged, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			h.mustTag(orchestrator, 0, "/machine.slice/a.scope/b", Options{})
			return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/b/c"), Options{})
		})},
		{name: "tagged caller tags its child process", chain: "2,^1", call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			p := proc(701, in.Cgroup)
			p.ChildOfCaller = true
			return h.r.TagProcess(in, 0, p, Options{})
		})},
		{name: "tagged caller tags a non-child", want: contid.ErrNotDescendant, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			return h.r.TagProcess(in, 0, proc(701, in.Cgroup), Options{})
		})},
		{name: "tagged caller child without AllowNesting", want: contid.ErrAccessDenied, call: nested(Options{}, func(h *harness, in Caller) (*Container, error) {
			p := proc(701, in.Cgroup)
			p.ChildOfCaller = true
			return h.r.TagProcess(in, 0, p, Options{})
		})},

		// Exceptions to enforcing mode: given from the host; from inside
		// a container only those the caller's own container holds.
		{name: "host grants AllowBPF", chain: "1", grants: contid.FlagAllowBPF,
			call: tagAs(orchestrator, 0, "/machine.slice/a.scope", Options{AllowBPF: true})},
		{name: "host grants both", chain: "1", grants: contid.FlagsGrants,
			call: tagAs(orchestrator, 0, "/machine.slice/a.scope", Options{AllowBPF: true, AllowModules: true})},
		{name: "unprivileged grants AllowBPF", want: contid.ErrAccessDenied,
			call: tagAs(Caller{PID: 9, Cgroup: "/user.slice"}, 0, "/machine.slice/a.scope", Options{AllowBPF: true})},
		{name: "nested grants AllowBPF it lacks", want: contid.ErrAccessDenied, wantMsg: "not tagged with AllowBPF",
			call: nested(nest, func(h *harness, in Caller) (*Container, error) {
				return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{AllowBPF: true})
			})},
		{name: "nested grants AllowModules it lacks", want: contid.ErrAccessDenied, wantMsg: "not tagged with AllowModules",
			call: nested(Options{AllowNesting: true, AllowBPF: true}, func(h *harness, in Caller) (*Container, error) {
				return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{AllowBPF: true, AllowModules: true})
			})},
		{name: "nested grants AllowBPF it holds", chain: "2,^1", grants: contid.FlagAllowBPF,
			call: nested(Options{AllowNesting: true, AllowBPF: true}, func(h *harness, in Caller) (*Container, error) {
				return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{AllowBPF: true})
			})},
		{name: "nested child of a granted parent is not granted unasked", chain: "2,^1",
			call: nested(Options{AllowNesting: true, AllowBPF: true}, func(h *harness, in Caller) (*Container, error) {
				return h.r.TagCgroup(in, 0, target("/machine.slice/a.scope/child"), Options{})
			})},
		{name: "nested process grant it lacks", want: contid.ErrAccessDenied, call: nested(nest, func(h *harness, in Caller) (*Container, error) {
			p := proc(701, in.Cgroup)
			p.ChildOfCaller = true
			return h.r.TagProcess(in, 0, p, Options{AllowModules: true})
		})},
		{name: "nested process grant it holds", chain: "2,^1", grants: contid.FlagAllowModules,
			call: nested(Options{AllowNesting: true, AllowModules: true}, func(h *harness, in Caller) (*Container, error) {
				p := proc(701, in.Cgroup)
				p.ChildOfCaller = true
				return h.r.TagProcess(in, 0, p, Options{AllowModules: true})
			})},

		// IDs.
		{name: "explicit new ID", chain: "42", call: tagAs(orchestrator, 42, "/machine.slice/a.scope", Options{})},
		{name: "explicit ID of another owner", want: contid.ErrIDInUse, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 42, "/machine.slice/a.scope", Options{})
			other := Caller{PID: 200, Start: 1, Privileged: true, Cgroup: "/system.slice/other.service"}
			h.alive.set(200, 1, true)
			return h.r.TagCgroup(other, 42, target("/machine.slice/b.scope"), Options{})
		}},
		{name: "explicit ID of a dead owner", want: contid.ErrIDInUse, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 42, "/machine.slice/a.scope", Options{})
			h.alive.set(orchestrator.PID, orchestrator.Start, false)
			return h.r.TagCgroup(orchestrator, 42, target("/machine.slice/b.scope"), Options{})
		}},
		{name: "explicit ID, owner PID reused", want: contid.ErrIDInUse, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 42, "/machine.slice/a.scope", Options{})
			reused := orchestrator
			reused.Start++
			h.alive.set(reused.PID, reused.Start, true)
			return h.r.TagCgroup(reused, 42, target("/machine.slice/b.scope"), Options{})
		}},
		{name: "explicit ID of an exited container", want: contid.ErrIDInUse, call: func(h *harness) (*Container, error) {
			h.mustTag(orchestrator, 42, "/machine.slice/a.scope", Options{})
			if _, err := h.r.MarkExited(42); err != nil {
				return nil, err
			}
			h.checkpoint()
			return h.r.TagCgroup(orchestrator, 42, target("/machine.slice/b.scope"), Options{})
		}},
		{name: "explicit ID the kernel already gave out", want: contid.ErrIDInUse, call: func(h *harness) (*Container, error) {
			if err := h.k.ClaimID(42); err != nil {
				return nil, err
			}
			h.checkpoint()
			return h.r.TagCgroup(orchestrator, 42, target("/machine.slice/a.scope"), Options{})
		}},

		// Limits.
		{name: "depth limit", cfg: Config{MaxDepth: 2}, want: contid.ErrLimitExceeded, wantMsg: "nesting depth 3 exceeds the limit of 2",
			call: func(h *harness) (*Container, error) {
				h.mustTag(orchestrator, 0, "/machine.slice/a.scope", nest)
				h.mustTag(orchestrator, 0, "/machine.slice/a.scope/b", nest)
				return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope/b/c"), Options{})
			}},
		{name: "depth at the limit", cfg: Config{MaxDepth: 2}, chain: "2,^1",
			call: func(h *harness) (*Container, error) {
				h.mustTag(orchestrator, 0, "/machine.slice/a.scope", nest)
				return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope/b"), Options{})
			}},
		{name: "count limit", cfg: Config{MaxContainers: 2}, want: contid.ErrLimitExceeded,
			call: func(h *harness) (*Container, error) {
				h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
				h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{})
				return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/c.scope"), Options{})
			}},
		{name: "count limit counts only active", cfg: Config{MaxContainers: 2}, chain: "3",
			call: func(h *harness) (*Container, error) {
				h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
				h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{})
				if _, err := h.r.MarkExited(1); err != nil {
					return nil, err
				}
				return h.r.TagCgroup(orchestrator, 0, target("/machine.slice/c.scope"), Options{})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			h.checkpoint()
			c, err := tt.call(h)
			wantErr(t, err, tt.want)
			if tt.want != nil {
				if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("message %q lacks %q", err, tt.wantMsg)
				}
				if n := len(h.r.List()); n != h.records {
					t.Errorf("a refused call changed the record count from %d to %d", h.records, n)
				}
				if h.k.tagged != h.kernelTags {
					t.Errorf("a refused call reached the kernel")
				}
				return
			}
			if got := c.Chain.String(); got != tt.chain {
				t.Errorf("chain %s, want %s", got, tt.chain)
			}
			if got := c.Flags & contid.FlagsGrants; got != tt.grants {
				t.Errorf("grants %v, want %v", got.Strings(), tt.grants.Strings())
			}
			// The kernel got the same tag the record holds.
			var kt contid.Tag
			var ok bool
			if len(c.Cgroups) > 0 {
				kt, ok = h.k.cgroupTag(c.Cgroups[0].ID)
			} else {
				kt, ok = h.k.procs[int(c.PIDs[0])]
			}
			if !ok || !slices.Equal(kt.Chain, c.Chain) || kt.Flags != c.Flags {
				t.Errorf("kernel has %+v (present %v), record %s flags %v", kt, ok, c.Chain, c.Flags)
			}
		})
	}
}

func TestIdempotentRepeat(t *testing.T) {
	h := newHarness(t, Config{})
	o := Options{Name: "web", AllowNesting: true}
	first := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", o)
	for _, id := range []contid.ID{contid.Unset, first.ID} {
		again, err := h.r.TagCgroup(orchestrator, id, target("/machine.slice/a.scope"), o)
		if err != nil {
			t.Fatalf("repeat with ID %d: %v", id, err)
		}
		if again.ID != first.ID {
			t.Fatalf("repeat gave ID %d, first %d", again.ID, first.ID)
		}
	}
	// A different request on the same cgroup is not a repeat.
	if _, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope"), Options{Name: "web"}); !errors.Is(err, contid.ErrAlreadyTagged) {
		t.Fatalf("changed options: %v, want AlreadyTagged", err)
	}
	if n := h.r.Active(); n != 1 {
		t.Fatalf("%d active containers after repeats, want 1", n)
	}

	p := ProcessTarget{PID: 300, Start: 9, Cgroup: "/system.slice/orch.service", PIDFD: 3}
	pc, err := h.r.TagProcess(orchestrator, 0, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.r.TagProcess(orchestrator, pc.ID, p, Options{})
	if err != nil || again.ID != pc.ID {
		t.Fatalf("process repeat: %v, %v", again, err)
	}
}

func TestPod(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mustTag(orchestrator, 0, "/machine.slice/pod-a.scope", Options{Name: "pod"})
	// The owner gives the same ID to a second cgroup and to a process.
	b, err := h.r.TagCgroup(orchestrator, a.ID, target("/machine.slice/pod-b.scope"), Options{})
	if err != nil {
		t.Fatalf("owner extends pod: %v", err)
	}
	p, err := h.r.TagProcess(orchestrator, a.ID, ProcessTarget{PID: 300, Start: 9, Cgroup: "/system.slice/orch.service", PIDFD: 3}, Options{})
	if err != nil {
		t.Fatalf("owner adds process: %v", err)
	}
	if b.ID != a.ID || p.ID != a.ID || len(p.Cgroups) != 2 || p.Cgroups[0].Path != "/machine.slice/pod-a.scope" || !slices.Equal(p.PIDs, []uint32{300}) {
		t.Fatalf("pod record %+v", p)
	}
	if kt, _ := h.k.cgroupTag(cgid("/machine.slice/pod-b.scope")); kt.ID() != a.ID {
		t.Fatalf("kernel tag of second cgroup %v", kt)
	}
	if n := h.r.Active(); n != 1 {
		t.Fatalf("a pod counts %d containers, want 1", n)
	}
	for _, path := range []string{"/machine.slice/pod-a.scope", "/machine.slice/pod-b.scope", "/machine.slice/pod-b.scope/x"} {
		if c, err := h.r.Enclosing(path); err != nil || c.ID != a.ID {
			t.Errorf("Enclosing(%s) = %v, %v", path, c, err)
		}
	}

	other := Caller{PID: 200, Start: 1, Privileged: true, Cgroup: "/system.slice/other.service"}
	h.alive.set(200, 1, true)
	if _, err := h.r.TagCgroup(other, a.ID, target("/machine.slice/pod-c.scope"), Options{}); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("other caller: %v, want IdInUse", err)
	}
	// Once the owner is gone nobody may extend the pod.
	h.alive.set(orchestrator.PID, orchestrator.Start, false)
	if _, err := h.r.TagCgroup(orchestrator, a.ID, target("/machine.slice/pod-c.scope"), Options{}); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("dead owner: %v, want IdInUse", err)
	}
	// A nil OwnerAlive treats every owner as gone.
	h.r.cfg.OwnerAlive = nil
	h.alive.set(orchestrator.PID, orchestrator.Start, true)
	if _, err := h.r.TagCgroup(orchestrator, a.ID, target("/machine.slice/pod-c.scope"), Options{}); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("nil OwnerAlive: %v, want IdInUse", err)
	}
}

func TestPodMustKeepNesting(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	h.mustTag(orchestrator, 0, "/machine.slice/n.scope", Options{AllowNesting: true})
	// Giving top-level ID a to a cgroup inside n would make n's subtree
	// hold an ID that is not nested in n.
	if _, err := h.r.TagCgroup(orchestrator, a.ID, target("/machine.slice/n.scope/x"), Options{}); !errors.Is(err, contid.ErrNotDescendant) {
		t.Fatalf("got %v, want NotDescendant", err)
	}
}

func TestExitedIDsNeverReused(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{Name: "web"})
	ex, err := h.r.MarkExited(a.ID)
	if err != nil || ex.State != StateExited || ex.Exited.IsZero() {
		t.Fatalf("MarkExited: %+v, %v", ex, err)
	}
	if _, err := h.r.MarkExited(a.ID); err != nil {
		t.Fatalf("second MarkExited: %v", err)
	}
	// The same machine starts again: same path, new cgroup inode.
	restarted, err := h.r.TagCgroup(orchestrator, 0, CgroupTarget{Path: "/machine.slice/a.scope", ID: 99999}, Options{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if restarted.ID == a.ID {
		t.Fatalf("exited ID %d handed out again", a.ID)
	}
	if _, err := h.r.TagCgroup(orchestrator, a.ID, target("/machine.slice/b.scope"), Options{}); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("explicit exited ID: %v, want IdInUse", err)
	}
	h.reopen()
	next := h.mustTag(orchestrator, 0, "/machine.slice/c.scope", Options{})
	if next.ID <= restarted.ID {
		t.Fatalf("after reopen allocated %d, not above %d", next.ID, restarted.ID)
	}
	// Lookups prefer the active container and still find the exited one.
	if c, _ := h.r.ByName("web"); c.ID != restarted.ID {
		t.Fatalf("ByName = %d, want the active %d", c.ID, restarted.ID)
	}
	if c, _ := h.r.ByCgroupID(cgid("/machine.slice/a.scope")); c == nil || c.ID != a.ID {
		t.Fatalf("ByCgroupID of the exited cgroup = %v", c)
	}
}

func TestStaleCgroupRecordIsExited(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	// The cgroup was removed and recreated but nobody called MarkExited.
	b, err := h.r.TagCgroup(orchestrator, 0, CgroupTarget{Path: "/machine.slice/a.scope", ID: 4242}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := h.r.Get(a.ID)
	if old.State != StateExited || b.ID == a.ID {
		t.Fatalf("old %+v new %+v", old, b)
	}
}

func TestKernelFailureRecordsNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.k.failTag = errors.New("map full")
	_, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/a.scope"), Options{})
	if err == nil || !strings.Contains(err.Error(), "map full") {
		t.Fatalf("got %v", err)
	}
	_, err = h.r.TagCgroup(orchestrator, 50, target("/machine.slice/b.scope"), Options{})
	if err == nil {
		t.Fatal("explicit ID with failing kernel succeeded")
	}
	if n := len(h.r.List()); n != 0 {
		t.Fatalf("%d records after kernel failures", n)
	}
	// The burnt IDs stay burnt, across a reboot too (the kernel forgets
	// its claims then).
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	h.k = newFakeKernel()
	h.open()
	c := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	if c.ID <= 50 {
		t.Fatalf("allocated %d, at or below a burnt ID", c.ID)
	}
	if _, err := h.r.TagCgroup(orchestrator, 50, target("/machine.slice/b.scope"), Options{}); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("burnt explicit ID: %v, want IdInUse", err)
	}
}

func TestAdopt(t *testing.T) {
	h := newHarness(t, Config{})
	cg := Cgroup{Path: "/machine.slice/auto.scope", ID: 777}
	tag := contid.Tag{Chain: contid.Chain{500}, Flags: contid.FlagAutotag}
	c, isNew, err := h.r.Adopt(tag, cg)
	if err != nil || !isNew || c.ID != 500 || c.OwnerPID != 0 {
		t.Fatalf("Adopt: %+v %v %v", c, isNew, err)
	}
	c2, isNew, err := h.r.Adopt(tag, cg)
	if err != nil || isNew || c2.ID != 500 || len(c2.Cgroups) != 1 {
		t.Fatalf("second Adopt: %+v %v %v", c2, isNew, err)
	}
	if _, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{501}}, cg); !errors.Is(err, contid.ErrAlreadyTagged) {
		t.Fatalf("other ID for the same cgroup: %v", err)
	}
	if _, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{500, 3}}, cg); !errors.Is(err, contid.ErrIDInUse) {
		t.Fatalf("same ID with another chain: %v", err)
	}
	if _, _, err := h.r.Adopt(contid.Tag{}, cg); !errors.Is(err, contid.ErrInvalidArgs) {
		t.Fatalf("empty tag: %v", err)
	}
	// An adopted machine cannot be taken over and gets its name later.
	if _, err := h.r.TagCgroup(orchestrator, 0, CgroupTarget{Path: cg.Path, ID: cg.ID}, Options{}); !errors.Is(err, contid.ErrAlreadyTagged) {
		t.Fatalf("tag adopted cgroup: %v", err)
	}
	if err := h.r.SetMetadata(500, "vm1", "machine-vm1.scope"); err != nil {
		t.Fatal(err)
	}
	if err := h.r.SetMetadata(501, "x", ""); !errors.Is(err, contid.ErrNoSuchContainer) {
		t.Fatalf("SetMetadata unknown: %v", err)
	}
	if c, err := h.r.ByUnit("machine-vm1.scope"); err != nil || c.Name != "vm1" {
		t.Fatalf("ByUnit: %+v %v", c, err)
	}
	// Adopted IDs raise the high-water mark: allocation continues above.
	if n := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{}); n.ID <= 500 {
		t.Fatalf("allocated %d after adopting 500", n.ID)
	}
}

func TestLookups(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{Name: "a", AllowNesting: true})
	b := h.mustTag(orchestrator, 0, "/machine.slice/a.scope/b", Options{Name: "b"})
	tests := []struct {
		name string
		get  func() (*Container, error)
		want contid.ID
		err  error
	}{
		{"Get", func() (*Container, error) { return h.r.Get(b.ID) }, b.ID, nil},
		{"Get unknown", func() (*Container, error) { return h.r.Get(99) }, 0, contid.ErrNoSuchContainer},
		{"Get zero", func() (*Container, error) { return h.r.Get(0) }, 0, contid.ErrInvalidArgs},
		{"ByCgroupPath", func() (*Container, error) { return h.r.ByCgroupPath("/machine.slice/a.scope") }, a.ID, nil},
		{"ByCgroupPath inner is not exact", func() (*Container, error) { return h.r.ByCgroupPath("/machine.slice/a.scope/x") }, 0, contid.ErrNoSuchContainer},
		{"ByCgroupPath relative", func() (*Container, error) { return h.r.ByCgroupPath("a.scope") }, 0, contid.ErrInvalidArgs},
		{"ByCgroupID", func() (*Container, error) { return h.r.ByCgroupID(cgid("/machine.slice/a.scope/b")) }, b.ID, nil},
		{"Enclosing exact", func() (*Container, error) { return h.r.Enclosing("/machine.slice/a.scope") }, a.ID, nil},
		{"Enclosing below a", func() (*Container, error) { return h.r.Enclosing("/machine.slice/a.scope/x/y") }, a.ID, nil},
		{"Enclosing below b", func() (*Container, error) { return h.r.Enclosing("/machine.slice/a.scope/b/y") }, b.ID, nil},
		{"Enclosing prefix sibling", func() (*Container, error) { return h.r.Enclosing("/machine.slice/a.scopex") }, 0, contid.ErrNoSuchContainer},
		{"ByName", func() (*Container, error) { return h.r.ByName("b") }, b.ID, nil},
		{"ByName unknown", func() (*Container, error) { return h.r.ByName("zz") }, 0, contid.ErrNoSuchContainer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.get()
			wantErr(t, err, tt.err)
			if tt.err == nil && c.ID != tt.want {
				t.Fatalf("got %d, want %d", c.ID, tt.want)
			}
		})
	}
	// Returned records are copies.
	c, _ := h.r.Get(b.ID)
	c.Chain[0] = 12345
	c.Cgroups[0].Path = "/tampered"
	if again, _ := h.r.Get(b.ID); again.Chain[0] != b.ID || again.Cgroups[0].Path != "/machine.slice/a.scope/b" {
		t.Fatalf("caller changed the registry's record: %+v", again)
	}
	if c.Parent() != a.ID || c.Depth() != 2 {
		t.Fatalf("Parent %d Depth %d", c.Parent(), c.Depth())
	}
}
