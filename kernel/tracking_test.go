package kernel

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid"
)

// startIn starts a command directly inside cg (CLONE_INTO_CGROUP) and
// ends it by PID when the test is over.
func startIn(t *testing.T, cg *testCgroup, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd(t)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, cg.rel, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func mustAllocate(t *testing.T, b *BPF) contid.ID {
	t.Helper()
	id, err := b.AllocateID()
	if err != nil {
		t.Fatalf("AllocateID: %v", err)
	}
	return id
}

func mustTagCgroup(t *testing.T, b *BPF, cg *testCgroup, tag contid.Tag) int {
	t.Helper()
	n, err := b.TagCgroup(cg.id, tag)
	if err != nil {
		t.Fatalf("TagCgroup(%s, %s): %v", cg.rel, tag.Chain, err)
	}
	return n
}

func wantID(t *testing.T, b *BPF, what string, pid int, want contid.ID) {
	t.Helper()
	got, err := idOf(t, b, pid)
	if want == contid.Unset {
		if !errors.Is(err, ErrNotTagged) {
			t.Errorf("%s (pid %d): got ID %d, err %v; want untagged", what, pid, got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s (pid %d): got ID %d, err %v; want %d", what, pid, got, err, want)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Check 1: a process forks 1,000 children in a tight loop while its cgroup
// is tagged; afterwards every process in the cgroup carries the ID.
func TestForkStormWhileTagging(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "storm")
	id := mustAllocate(t, b)

	const children = 1000
	startIn(t, cg, "sh", "-c", "for i in $(seq "+strconv.Itoa(children)+"); do sleep 600 & done; wait")
	// Tag in the middle of the loop, so forks race with the walk.
	waitFor(t, 60*time.Second, "the first 100 children", func() bool { return len(cg.procs(t)) >= 100 })
	before := len(cg.procs(t))
	walked := mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{id}})
	waitFor(t, 180*time.Second, "all children", func() bool { return len(cg.procs(t)) >= children+1 })

	pids := cg.procs(t)
	var tagged, missed int
	for _, pid := range pids {
		got, err := idOf(t, b, pid)
		switch {
		case err == nil && got == id:
			tagged++
		case errors.Is(err, ErrNoProcess):
			// cannot happen: sleep 600 outlives the test
			t.Errorf("pid %d vanished", pid)
		default:
			missed++
			t.Errorf("pid %d: got ID %d, err %v; want %d", pid, got, err, id)
		}
	}
	t.Logf("%d processes in the cgroup (%d when tagging began): %d carry ID %d, %d missed; the walk tagged %d, fork inheritance the rest",
		len(pids), before, tagged, id, missed, walked)
	if len(pids) != children+1 || tagged != len(pids) {
		t.Fatalf("want %d tagged processes, got %d of %d", children+1, tagged, len(pids))
	}
}

// Check 2: a tagged task keeps its ID when moved by cgroup.procs and when
// its child is cloned straight into another cgroup.
func TestTaggedTaskKeepsIDAcrossMoves(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	// One parent for all three: in enforcing mode a tagged task may not
	// move or clone across the root, which is an ancestor of the loader's
	// cgroup (the cgroup_move guard), and the tagged helper below clones.
	base := newTestCgroup(t, nil, "keep")
	tagged := newTestCgroup(t, base, "a")
	elsewhere := newTestCgroup(t, base, "b")
	plain := newTestCgroup(t, base, "plain")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, tagged, contid.Tag{Chain: contid.Chain{x}})

	t.Run("cgroup.procs", func(t *testing.T) {
		p := startIn(t, tagged, "sleep", "60")
		wantID(t, b, "forked into tagged cgroup", p.Process.Pid, x)
		elsewhere.move(t, p.Process.Pid)
		wantID(t, b, "after the move to an untagged cgroup", p.Process.Pid, x)
	})

	t.Run("CLONE_INTO_CGROUP from a tagged parent", func(t *testing.T) {
		helper, out := startHelper(t, "clone-into", elsewhere.full)
		helper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: tagged.fd(t)}
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		killOnCleanup(t, helper.Process.Pid)
		wantID(t, b, "helper in the tagged cgroup", helper.Process.Pid, x)
		child := readPID(t, out)
		killOnCleanup(t, child)
		cgPath, err := CgroupOfPID(child)
		if err != nil || cgPath != elsewhere.rel {
			t.Fatalf("child landed in %q (%v), want %q", cgPath, err, elsewhere.rel)
		}
		wantID(t, b, "child cloned into an untagged cgroup", child, x)
	})

	t.Run("CLONE_INTO_CGROUP from an untagged parent", func(t *testing.T) {
		helper, out := startHelper(t, "clone-into", tagged.full)
		helper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: plain.fd(t)}
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		killOnCleanup(t, helper.Process.Pid)
		wantID(t, b, "helper in an untagged cgroup", helper.Process.Pid, contid.Unset)
		child := readPID(t, out)
		killOnCleanup(t, child)
		wantID(t, b, "child cloned into the tagged cgroup", child, x)
	})
}

func readPID(t *testing.T, out interface{ ReadString(byte) (string, error) }) int {
	t.Helper()
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper output: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper output %q: %v", line, err)
	}
	return pid
}

// nextEvent reads events until one matches or the timeout passes.
func nextEvent(t *testing.T, b *BPF, timeout time.Duration, match func(Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		ev, err := b.ReadEvent(ctx)
		if err != nil {
			t.Fatalf("no matching event: %v", err)
		}
		if match(ev) {
			return ev
		}
	}
}

// Check 3: write-once on join, nesting, and JoinPolicy ignore.
func TestJoinRules(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	home := newTestCgroup(t, nil, "join-home")
	foreign := newTestCgroup(t, nil, "join-foreign")
	nested := newTestCgroup(t, nil, "join-nested")
	ignoring := newTestCgroup(t, nil, "join-ignore")
	taking := newTestCgroup(t, nil, "join-take")
	plain := newTestCgroup(t, nil, "join-plain")

	x, y, z, w, v := mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b)
	mustTagCgroup(t, b, home, contid.Tag{Chain: contid.Chain{x}, Flags: contid.FlagAllowNesting})
	mustTagCgroup(t, b, foreign, contid.Tag{Chain: contid.Chain{y}})
	mustTagCgroup(t, b, nested, contid.Tag{Chain: contid.Chain{z, x}})
	mustTagCgroup(t, b, ignoring, contid.Tag{Chain: contid.Chain{w}, Flags: contid.FlagJoinIgnore})
	mustTagCgroup(t, b, taking, contid.Tag{Chain: contid.Chain{v}})

	p := startIn(t, home, "sleep", "60").Process.Pid
	wantID(t, b, "task of X", p, x)

	foreign.move(t, p)
	wantID(t, b, "task of X moved into Y (not nested)", p, x)
	ev := nextEvent(t, b, 5*time.Second, func(e Event) bool {
		return e.Kind == EventJoinRefused && e.PID == uint32(p)
	})
	if ev.Tag.ID() != y || ev.CgroupID != foreign.id {
		t.Errorf("join-refused event = %+v, want ID %d cgroup %d", ev, y, foreign.id)
	}

	nested.move(t, p)
	wantID(t, b, "task of X moved into Z nested in X", p, z)

	home.move(t, p)
	wantID(t, b, "task of Z moved back into X", p, z)

	q := startIn(t, plain, "sleep", "60").Process.Pid
	wantID(t, b, "untagged task", q, contid.Unset)
	ignoring.move(t, q)
	wantID(t, b, "untagged task moved into a JoinPolicy=ignore cgroup", q, contid.Unset)
	taking.move(t, q)
	wantID(t, b, "untagged task moved into a tagging cgroup", q, v)
}

// Check 4: a cgroup made under an autotag parent has its ID when mkdir
// returns, before any process is inside.
func TestAutotagAtMkdir(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	parent := newTestCgroup(t, nil, "autotag")
	nestParent := newTestCgroup(t, nil, "autotag-nest")
	outer := mustAllocate(t, b)
	mustTagCgroup(t, b, nestParent, contid.Tag{Chain: contid.Chain{outer}, Flags: contid.FlagAllowNesting})
	if err := b.SetAutotagParents([]uint64{parent.id, nestParent.id}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		parent    *testCgroup
		wantChain func(contid.ID) contid.Chain
	}{
		{"top-level", parent, func(id contid.ID) contid.Chain { return contid.Chain{id} }},
		{"nested", nestParent, func(id contid.ID) contid.Chain { return contid.Chain{id, outer} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			child := newTestCgroup(t, tc.parent, "machine-1")
			tag, err := b.CgroupTag(child.id)
			if err != nil {
				t.Fatalf("right after mkdir: %v", err)
			}
			if n := len(child.procs(t)); n != 0 {
				t.Fatalf("cgroup already holds %d processes", n)
			}
			if tag.Flags&contid.FlagAutotag == 0 || tag.Chain.String() != tc.wantChain(tag.ID()).String() {
				t.Fatalf("tag = %s flags %v, want chain %s with autotag", tag.Chain, tag.Flags.Strings(), tc.wantChain(tag.ID()))
			}
			ev := nextEvent(t, b, 5*time.Second, func(e Event) bool {
				return e.Kind == EventAutotag && e.CgroupID == child.id
			})
			if ev.ParentCgroupID != tc.parent.id || ev.Name != "machine-1" || ev.Tag.Chain.String() != tag.Chain.String() {
				t.Errorf("autotag event = %+v, want parent %d, name machine-1, chain %s", ev, tc.parent.id, tag.Chain)
			}
			p := startIn(t, child, "sleep", "60").Process.Pid
			wantID(t, b, "first process in the autotagged cgroup", p, tag.ID())

			again := mustAllocate(t, b)
			if again <= tag.ID() {
				t.Errorf("AllocateID after autotag %d returned %d", tag.ID(), again)
			}
			if err := b.ClaimID(tag.ID()); !errors.Is(err, contid.ErrIDTaken) {
				t.Errorf("ClaimID(autotagged %d) = %v, want ErrIDTaken", tag.ID(), err)
			}
			t.Logf("autotag: %s got %s (event name %q)", child.rel, tag.Chain, ev.Name)
		})
	}

	// With the depth limit at 1 a nested autotag would exceed it: the
	// cgroup stays untagged instead of becoming a top-level container.
	if err := b.SetMaxDepth(1); err != nil {
		t.Fatal(err)
	}
	tooDeep := newTestCgroup(t, nestParent, "machine-deep")
	if tag, err := b.CgroupTag(tooDeep.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("nested autotag beyond max depth 1: tag %s, err %v; want ErrNotTagged", tag.Chain, err)
	}

	if err := b.SetAutotagParents(nil); err != nil {
		t.Fatal(err)
	}
	after := newTestCgroup(t, parent, "machine-2")
	if _, err := b.CgroupTag(after.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("autotag parent removed, new cgroup: err %v, want ErrNotTagged", err)
	}
}

// The kernel autotags containers only: a slice under an autotag parent
// (it groups units) and podman's conmon scope (the monitor beside the
// container, which forks the container's init) stay untagged, while the
// container's own scope beside them is tagged.
func TestAutotagSkipsNonContainers(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	parent := newTestCgroup(t, nil, "autotag-skip")
	if err := b.SetAutotagParents([]uint64{parent.id}); err != nil {
		t.Fatal(err)
	}
	const id = "3f2a9c"
	cases := []struct {
		name   string
		tagged bool
	}{
		{"libpod-" + id + ".scope", true},
		{"libpod-conmon-" + id + ".scope", false},
		{"machine-pods.slice", false},
		{"libpod-conmo.scope", true},
		{"xlibpod-conmon-" + id + ".scope", true},
		{"conmon-" + id + ".scope", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			child := newTestCgroup(t, parent, tc.name)
			_, err := b.CgroupTag(child.id)
			switch {
			case tc.tagged && err != nil:
				t.Fatalf("%s not autotagged: %v", tc.name, err)
			case !tc.tagged && !errors.Is(err, ErrNotTagged):
				t.Fatalf("%s: err %v, want ErrNotTagged", tc.name, err)
			}
		})
	}
}

// Under a parent whose children are mostly host services (Docker's
// system.slice), only the children named like the pattern are autotagged:
// the prefix, at least one byte, the suffix. The control is the same
// mkdir before the pattern is set, which stays untagged.
func TestAutotagScopesMatchByName(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	parent := newTestCgroup(t, nil, "autotag-scopes")
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	before := newTestCgroup(t, parent, "docker-before.scope")
	if _, err := b.CgroupTag(before.id); !errors.Is(err, ErrNotTagged) {
		t.Fatalf("control, no pattern set: err %v, want ErrNotTagged", err)
	}
	crio, err := contid.ParseScopePattern("/x/crio-*")
	if err != nil {
		t.Fatal(err)
	}
	scopes := map[uint64][]contid.ScopePattern{parent.id: {
		{Parent: parent.rel, Prefix: "docker-", Suffix: ".scope"},
		{Parent: parent.rel, Prefix: crio.Prefix, Suffix: crio.Suffix},
	}}
	if err := b.SetAutotagScopes(scopes); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 255-len("docker-")-len(".scope"))
	cases := []struct {
		name   string
		tagged bool
	}{
		{"docker-" + id + ".scope", true},
		{"docker-" + long + ".scope", true},
		{"crio-" + id, true},
		{"crio-" + id + ".scope", true},
		{"docker-.scope", false},
		{"docker.service", false},
		{"docker-" + id + ".slice", false},
		{"xdocker-" + id + ".scope", false},
		{"docker-" + id + ".scopex", false},
		{"cron.service", false},
	}
	for _, tc := range cases {
		t.Run(tc.name[:min(len(tc.name), 40)], func(t *testing.T) {
			child := newTestCgroup(t, parent, tc.name)
			tag, err := b.CgroupTag(child.id)
			switch {
			case tc.tagged && err != nil:
				t.Fatalf("%s not autotagged: %v", tc.name, err)
			case tc.tagged && tag.Flags&contid.FlagAutotag == 0:
				t.Fatalf("%s tagged without the autotag flag: %+v", tc.name, tag)
			case !tc.tagged && !errors.Is(err, ErrNotTagged):
				t.Fatalf("%s: err %v, want ErrNotTagged", tc.name, err)
			}
		})
	}
	// Grandchildren are not children: a cgroup Docker's runtime makes
	// inside a container's scope is that container's business.
	inside := newTestCgroup(t, parent, "docker-nested.scope")
	outer, err := b.CgroupTag(inside.id)
	if err != nil {
		t.Fatal(err)
	}
	deeper := newTestCgroup(t, inside, "docker-deeper.scope")
	switch tag, err := b.CgroupTag(deeper.id); {
	case err == nil && tag.ID() != outer.ID():
		t.Fatalf("grandchild got an ID of its own: %+v (its parent's: %+v)", tag, outer)
	case err != nil && !errors.Is(err, ErrNotTagged):
		t.Fatalf("grandchild: err %v, want its parent's ID or ErrNotTagged", err)
	}

	if err := b.SetAutotagScopes(nil); err != nil {
		t.Fatal(err)
	}
	after := newTestCgroup(t, parent, "docker-after.scope")
	if _, err := b.CgroupTag(after.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("patterns removed, new cgroup: err %v, want ErrNotTagged", err)
	}
}

func TestSetAutotagScopesRejectsTooMany(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	p := contid.ScopePattern{Parent: "/p", Prefix: "a-"}
	if err := b.SetAutotagScopes(map[uint64][]contid.ScopePattern{1: {p, p, p, p, p}}); err == nil {
		t.Fatal("five patterns for one parent accepted")
	}
}

// started is a process the test started, with its pipes.
type started struct {
	cmd *exec.Cmd
	pid int
	in  io.WriteCloser
	out *bufio.Reader
}

// execIn is startIn with stdin and stdout pipes.
func execIn(t *testing.T, cg *testCgroup, name string, args ...string) started {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd(t)}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, cg.rel, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return started{cmd: cmd, pid: cmd.Process.Pid, in: in, out: bufio.NewReader(out)}
}

// A multi-threaded process that moves deeper (X to Z nested in X) hands Z
// to children forked by any of its threads, including threads that
// inherited X before the move: the ID belongs to the process.
func TestThreadsFollowProcessJoin(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	home := newTestCgroup(t, nil, "threads-home")
	nested := newTestCgroup(t, nil, "threads-nested")
	plain := newTestCgroup(t, nil, "threads-plain")
	x, z := mustAllocate(t, b), mustAllocate(t, b)
	mustTagCgroup(t, b, home, contid.Tag{Chain: contid.Chain{x}, Flags: contid.FlagAllowNesting})
	mustTagCgroup(t, b, nested, contid.Tag{Chain: contid.Chain{z, x}})

	helper, out := startHelper(t, "spawn-from-thread")
	helper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: home.fd(t)}
	in, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, helper.Process.Pid)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	wantID(t, b, "multi-threaded helper in X", helper.Process.Pid, x)

	nested.move(t, helper.Process.Pid)
	wantID(t, b, "helper moved into Z nested in X", helper.Process.Pid, z)
	plain.move(t, helper.Process.Pid)

	for i := 0; i < 3; i++ {
		if _, err := in.Write([]byte(plain.full + "\n")); err != nil {
			t.Fatal(err)
		}
		child := readPID(t, out)
		killOnCleanup(t, child)
		wantID(t, b, "child of a non-leader thread, cloned into an untagged cgroup", child, z)
	}
}
