package dbus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// Every error name of docs/DESIGN.md is provoked through the real daemon on
// the real bus, and comes back under exactly that name.
func TestErrorNames(t *testing.T) {
	e := newEnv(t, "[Manager]\nMaxContainers=4\n")
	d := e.start()
	c := e.busClient()
	ctx := context.Background()
	p2p := "unix:path=" + e.sock

	tagged := e.cgroup("tagged")
	if _, err := c.TagCgroup(ctx, tagged, 0, client.TagOptions{}); err != nil {
		t.Fatal(err)
	}
	owned := e.cgroup("owned")
	const heldUUID = "5f0c7a8e-9b1d-4e2f-8a3b-6c7d8e9f0a1b"
	if _, err := c.TagCgroup(ctx, owned, 777, client.TagOptions{UUID: heldUUID}); err != nil {
		t.Fatal(err)
	}
	self := e.cgroup("self")
	other := e.cgroup("other")
	// A root process in a cgroup with a child (sh waiting for sleep) is
	// not fresh.
	parent := e.startIn(self, nil, "sh", "-c", "sleep 1000 & wait")
	waitChildren(t, parent.Process.Pid)

	tests := []struct {
		name string
		want string
		call func() error
	}{
		{"AlreadyTagged", client.NameAlreadyTagged, func() error {
			_, err := c.TagCgroup(ctx, tagged, 4242, client.TagOptions{})
			return err
		}},
		{"NotDescendant", client.NameNotDescendant, func() error {
			// busctl runs as root inside `self` and asks to tag `self`.
			return busctlIn(e, self, nil, p2p, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", self, "0", "0")
		}},
		{"IdInUse", client.NameIDInUse, func() error {
			// Another process (busctl) asks for the ID this test process owns.
			return busctlIn(e, other, nil, p2p, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", e.cgroup("other2"), "777", "0")
		}},
		{"UUIDInUse", client.NameUUIDInUse, func() error {
			_, err := c.TagCgroup(ctx, e.cgroup("uuid"), 0, client.TagOptions{UUID: heldUUID})
			return err
		}},
		{"NoSuchContainer", client.NameNoSuchContainer, func() error {
			_, err := c.GetContainer(ctx, 987654)
			return err
		}},
		{"NoSuchUnit", client.NameNoSuchUnit, func() error {
			_, err := c.TagUnit(ctx, "contid-test-absent.service", 0, client.TagOptions{})
			return err
		}},
		{"NoSuchMachine", client.NameNoSuchMachine, func() error {
			_, err := c.TagMachine(ctx, "contid-test-absent", 0, client.TagOptions{})
			return err
		}},
		{"NoSuchCgroup", client.NameNoSuchCgroup, func() error {
			_, err := c.TagCgroup(ctx, e.cgBase+"/absent", 0, client.TagOptions{})
			return err
		}},
		{"NotFresh", client.NameNotFresh, func() error {
			_, err := c.TagPID(ctx, uint32(parent.Process.Pid), 0, client.TagOptions{})
			return err
		}},
		{"LimitExceeded", client.NameLimitExceeded, func() error {
			var err error
			for i := 0; i < 5 && err == nil; i++ {
				_, err = c.TagCgroup(ctx, e.cgroup(fmt.Sprintf("limit%d", i)), 0, client.TagOptions{})
			}
			return err
		}},
		{"AccessDenied", client.NameAccessDenied, func() error {
			return busctlIn(e, other, nobody, p2p, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", e.cgroup("denied"), "0", "0")
		}},
		{"InvalidArgs", client.NameInvalidArgs, func() error {
			_, err := c.TagCgroup(ctx, "relative/path", 0, client.TagOptions{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatalf("want %s, got success", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) && !client.IsRemote(err, tt.want) {
				t.Fatalf("want %s, got %v", tt.want, err)
			}
		})
	}
	if !d.alive() {
		t.Fatalf("contidd died:\n%s", d.logText())
	}
}

// busctlIn runs busctl inside a cgroup (optionally as another user) and
// returns an error carrying the D-Bus error name it printed.
func busctlIn(e *env, cg string, cred *syscall.Credential, address string, args ...string) error {
	cmd := e.startInCapture(cg, cred, "busctl", append([]string{"--address=" + address}, args...)...)
	return cmd
}

// startInCapture runs a command to completion inside a cgroup and turns a
// failure into an error holding its output (busctl prints the D-Bus error
// name with -j? no: it prints the message; we ask for the name below).
func (e *env) startInCapture(cg string, cred *syscall.Credential, name string, args ...string) error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// SYSTEMD_LOG_LEVEL=debug makes sd-bus log the error name of a failed
	// call, which busctl's own message does not include.
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cmd.Environ(), "SYSTEMD_LOG_LEVEL=debug")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	defer placeIn(e.t, cmd, e.cgRoot+cg, cred)()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, out)
	}
	return nil
}

func waitChildren(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b, _ := readFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if strings.TrimSpace(b) != "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never forked", pid)
}

// A caller that is not root is refused TagCgroup with AccessDenied but
// may list containers and read properties, on both transports.
func TestUnprivilegedCaller(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	target := e.cgroup("target")
	for _, addr := range []string{e.busAddr, "unix:path=" + e.sock} {
		out, err := busctl(true, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", target, "0", "0")
		if err == nil || !strings.Contains(out, "Access denied") {
			t.Errorf("%s: nobody's TagCgroup: want Access denied, got %v: %s", addr, err, out)
		}
		out, err = busctl(true, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "ListContainers")
		if err != nil || !strings.HasPrefix(out, "a(tsssto) 0") {
			t.Errorf("%s: nobody's ListContainers: %v: %s", addr, err, out)
		}
		out, err = busctl(true, addr, "get-property", client.BusName, "/org/contid1", client.ManagerInterface, "Enforcement")
		if err != nil || strings.TrimSpace(out) != `s "tracking"` {
			t.Errorf("%s: nobody's get-property: %v: %s", addr, err, out)
		}
	}
	// And the same request as root succeeds: the refusal was about the
	// caller, not the target.
	out, err := busctl(false, e.busAddr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", target, "0", "0")
	if err != nil || !strings.HasPrefix(out, "to ") {
		t.Fatalf("root's TagCgroup: %v: %s", err, out)
	}
}

// busctl speaks to the peer-to-peer socket exactly as on a bus.
func TestBusctlPeerToPeer(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	cg := e.cgroup("p2p")
	addr := "unix:path=" + e.sock
	out, err := busctl(false, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "TagCgroup", "sta{sv}", cg, "0", "1", "Name", "s", "web")
	if err != nil {
		t.Fatalf("TagCgroup: %v: %s", err, out)
	}
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "to" {
		t.Fatalf("TagCgroup reply %q", out)
	}
	id := f[1]
	out, err = busctl(false, addr, "call", client.BusName, "/org/contid1", client.ManagerInterface, "ListContainers")
	want := fmt.Sprintf(`a(tsssto) 1 %s "web" "" "%s" 0 "/org/contid1/container/%s"`, id, cg, id)
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("ListContainers: %v\n got %s\nwant %s", err, out, want)
	}
	out, err = busctl(false, addr, "get-property", client.BusName, "/org/contid1/container/"+id, client.ContainerInterface, "ControlGroup")
	if err != nil || strings.TrimSpace(out) != `s "`+cg+`"` {
		t.Fatalf("get-property: %v: %s", err, out)
	}
	// Whatever the count, the counter reads as a u64 (the harness's
	// contidd may have no journald to write to).
	out, err = busctl(false, addr, "get-property", client.BusName, "/org/contid1", client.ManagerInterface, "EventsAmbiguous")
	if err != nil || !regexp.MustCompile(`^t [0-9]+$`).MatchString(strings.TrimSpace(out)) {
		t.Fatalf("get-property EventsAmbiguous: %v: %s", err, out)
	}
	out, err = busctl(false, addr, "introspect", client.BusName, "/org/contid1")
	if err != nil || !strings.Contains(out, ".TagProcess") || !strings.Contains(out, ".ContainerNew") || !strings.Contains(out, ".EventsAmbiguous") {
		t.Fatalf("introspect: %v: %s", err, out)
	}
}

// 200 concurrent TagCgroup calls on 200 cgroups all succeed with distinct
// IDs, and every one is listed afterwards.
func TestConcurrentTagCgroup(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	const n = 200
	paths := make([]string, n)
	for i := range paths {
		paths[i] = e.cgroup(fmt.Sprintf("c%03d", i))
	}
	// Half over the bus, half over the socket, several connections each.
	clients := []*client.Client{e.busClient(), e.busClient(), e.p2pClient(), e.p2pClient()}
	ids := make([]contid.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ids[i], errs[i] = clients[i%len(clients)].TagCgroup(context.Background(), paths[i], 0, client.TagOptions{})
		}(i)
	}
	wg.Wait()
	t.Logf("%d concurrent TagCgroup calls took %v", n, time.Since(start))
	seen := map[contid.ID]int{}
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("call %d (%s): %v", i, paths[i], errs[i])
		}
		if j, dup := seen[ids[i]]; dup {
			t.Fatalf("ID %d given to both %s and %s", ids[i], paths[j], paths[i])
		}
		seen[ids[i]] = i
	}
	list, err := clients[0].ListContainers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("ListContainers has %d entries, want %d", len(list), n)
	}
	for _, le := range list {
		i, ok := seen[le.ID]
		if !ok || le.Cgroup != paths[i] {
			t.Fatalf("listed %+v does not match a tag call", le)
		}
	}
	mi, err := clients[2].Manager(context.Background())
	if err != nil || mi.Containers != n {
		t.Fatalf("Containers property = %d (%v), want %d", mi.Containers, err, n)
	}
}

// After SIGKILL and a restart, ListContainers and GetContainerByPID answer
// exactly as before: the registry persisted, the pinned maps kept the
// tags.
func TestRestartAfterSIGKILL(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	c := e.busClient()
	ctx := context.Background()
	var pids []uint32
	for i := 0; i < 3; i++ {
		cg := e.cgroup(fmt.Sprintf("r%d", i))
		if _, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{Name: fmt.Sprintf("r%d", i)}); err != nil {
			t.Fatal(err)
		}
		// A process that enters the tagged cgroup afterwards inherits the ID.
		p := e.startIn(cg, nil, "sleep", "1000")
		pids = append(pids, uint32(p.Process.Pid))
	}
	fresh := e.startIn(e.cgroup("fresh"), nil, "sleep", "1000")
	if _, err := c.TagPID(ctx, uint32(fresh.Process.Pid), 0, client.TagOptions{Name: "by-pid"}); err != nil {
		t.Fatal(err)
	}
	pids = append(pids, uint32(fresh.Process.Pid))

	snapshot := func(c *client.Client) ([]client.ListEntry, []contid.ID) {
		t.Helper()
		list, err := c.ListContainers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var byPID []contid.ID
		for _, pid := range pids {
			id, err := c.GetContainerByPID(ctx, pid)
			if err != nil {
				t.Fatalf("GetContainerByPID(%d): %v", pid, err)
			}
			byPID = append(byPID, id)
		}
		return list, byPID
	}
	list1, byPID1 := snapshot(c)
	if len(list1) != 4 {
		t.Fatalf("want 4 containers, got %+v", list1)
	}
	d.kill()
	c.Close()

	e.start()
	list2, byPID2 := snapshot(e.busClient())
	if !reflect.DeepEqual(list1, list2) {
		t.Fatalf("ListContainers changed across SIGKILL:\nbefore %+v\nafter  %+v", list1, list2)
	}
	if !reflect.DeepEqual(byPID1, byPID2) {
		t.Fatalf("GetContainerByPID changed across SIGKILL: before %v after %v", byPID1, byPID2)
	}
	// Over the socket too.
	list3, byPID3 := snapshot(e.p2pClient())
	if !reflect.DeepEqual(list1, list3) || !reflect.DeepEqual(byPID1, byPID3) {
		t.Fatalf("peer-to-peer answers differ after restart")
	}
}

// Malformed input is refused with InvalidArgs or the specific error, and
// never takes the daemon down.
func TestMalformedInput(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	c := e.busClient()
	p := e.p2pClient()
	ctx := context.Background()
	ok := e.cgroup("ok")
	huge := "/" + strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		call func(c *client.Client) error
		want string
	}{
		{"relative path", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, "machine.slice/x", 0, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
		{"dot-dot", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, ok+"/../"+ok[1:], 0, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
		{"dot-dot escape", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, "/../../etc", 0, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
		{"root cgroup", func(c *client.Client) error { _, err := c.TagCgroup(ctx, "/", 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"empty path", func(c *client.Client) error { _, err := c.TagCgroup(ctx, "", 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"double slash", func(c *client.Client) error { _, err := c.TagCgroup(ctx, ok+"//x", 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"huge path", func(c *client.Client) error { _, err := c.TagCgroup(ctx, huge, 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"huge name", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, ok, 0, client.TagOptions{Name: strings.Repeat("n", 100000)})
			return err
		}, client.NameInvalidArgs},
		{"control chars in name", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, ok, 0, client.TagOptions{Name: "a\nb"})
			return err
		}, client.NameInvalidArgs},
		{"u64 max id", func(c *client.Client) error {
			_, err := c.TagCgroup(ctx, ok, contid.Invalid, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
		{"GetContainer 0", func(c *client.Client) error { _, err := c.GetContainer(ctx, 0); return err }, client.NameInvalidArgs},
		{"GetContainer u64 max", func(c *client.Client) error { _, err := c.GetContainer(ctx, contid.Invalid); return err }, client.NameInvalidArgs},
		{"GetContainerByPID 0", func(c *client.Client) error { _, err := c.GetContainerByPID(ctx, 0); return err }, client.NameInvalidArgs},
		{"GetContainerByPID absent", func(c *client.Client) error { _, err := c.GetContainerByPID(ctx, 1<<22+5); return err }, client.NameNoSuchContainer},
		{"TagPID 0", func(c *client.Client) error { _, err := c.TagPID(ctx, 0, 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"TagPID u32 max", func(c *client.Client) error { _, err := c.TagPID(ctx, ^uint32(0), 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"unknown unit", func(c *client.Client) error {
			_, err := c.TagUnit(ctx, "nope.service", 0, client.TagOptions{})
			return err
		}, client.NameNoSuchUnit},
		{"unit without type", func(c *client.Client) error { _, err := c.TagUnit(ctx, "nope", 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"unit huge", func(c *client.Client) error {
			_, err := c.TagUnit(ctx, strings.Repeat("u", 70000)+".service", 0, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
		{"GetContainerByUnit bad", func(c *client.Client) error { _, err := c.GetContainerByUnit(ctx, "../x"); return err }, client.NameInvalidArgs},
		{"machine bad chars", func(c *client.Client) error { _, err := c.TagMachine(ctx, "a/b", 0, client.TagOptions{}); return err }, client.NameInvalidArgs},
		{"unknown option", func(c *client.Client) error {
			_, err := c.TagCgroupRaw(ctx, ok, 0, map[string]godbus.Variant{"AllowNestin": godbus.MakeVariant(true)})
			return err
		}, client.NameInvalidArgs},
		{"option wrong type", func(c *client.Client) error {
			_, err := c.TagCgroupRaw(ctx, ok, 0, map[string]godbus.Variant{"AllowNesting": godbus.MakeVariant("yes")})
			return err
		}, client.NameInvalidArgs},
		{"bad JoinPolicy", func(c *client.Client) error {
			_, err := c.TagCgroupRaw(ctx, ok, 0, map[string]godbus.Variant{"JoinPolicy": godbus.MakeVariant("sometimes")})
			return err
		}, client.NameInvalidArgs},
		{"wrong signature", func(c *client.Client) error {
			return c.Conn().Object(client.BusName, client.ManagerPath).Call(client.ManagerInterface+".TagCgroup", 0, uint32(5)).Err
		}, client.NameInvalidArgs},
		{"TagProcess with a non-pidfd", func(c *client.Client) error {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_, err = c.TagProcess(ctx, fd, 0, client.TagOptions{})
			return err
		}, client.NameInvalidArgs},
	}
	// These messages are beyond what contidd reads, on either transport;
	// they are refused before decoding.
	oversize := map[string]bool{"huge path": true, "huge name": true, "unit huge": true}
	for _, tt := range tests {
		for tn, cl := range map[string]*client.Client{"bus": c, "p2p": p} {
			t.Run(tt.name+"/"+tn, func(t *testing.T) {
				want := tt.want
				if oversize[tt.name] {
					want = client.NameLimitsExceeded
				}
				err := tt.call(cl)
				if !hasErrorName(err, want) {
					t.Fatalf("want %s, got %v", want, err)
				}
			})
		}
	}
	if !d.alive() {
		t.Fatalf("contidd died:\n%s", d.logText())
	}
	if _, err := c.TagCgroup(ctx, ok, 0, client.TagOptions{}); err != nil {
		t.Fatalf("a valid call after the malformed ones failed: %v", err)
	}
}

// TagProcess receives a pidfd over both transports (unix fd passing) and
// tags that process; its ID is then visible by PID.
func TestTagProcessPidfd(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	ctx := context.Background()
	for tn, c := range map[string]*client.Client{"bus": e.busClient(), "p2p": e.p2pClient()} {
		t.Run(tn, func(t *testing.T) {
			p := e.startIn(e.cgroup("proc-"+tn), nil, "sleep", "1000")
			fd, err := unix.PidfdOpen(p.Process.Pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			id, err := c.TagProcess(ctx, fd, 0, client.TagOptions{Name: "proc-" + tn})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.GetContainerByPID(ctx, uint32(p.Process.Pid))
			if err != nil || got != id {
				t.Fatalf("GetContainerByPID = %d, %v; want %d", got, err, id)
			}
			pids, err := c.ListProcesses(ctx, id)
			if err != nil || !reflect.DeepEqual(pids, []uint32{uint32(p.Process.Pid)}) {
				t.Fatalf("ListProcesses = %v, %v", pids, err)
			}
			// Write-once: the same process cannot be tagged again.
			if _, err := c.TagProcess(ctx, fd, id+1000, client.TagOptions{}); !errors.Is(err, contid.ErrAlreadyTagged) {
				t.Fatalf("second TagProcess: want AlreadyTagged, got %v", err)
			}
		})
	}
}

// A container whose cgroup empties is marked exited, ContainerRemoved is
// emitted, and the record stays; SIGTERM then stops contidd cleanly.
func TestContainerExitAndSignals(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	c := e.busClient()
	ctx := context.Background()
	sigs := make(chan *godbus.Signal, 16)
	c.Conn().Signal(sigs)
	if err := c.Conn().AddMatchSignal(godbus.WithMatchInterface(client.ManagerInterface)); err != nil {
		t.Fatal(err)
	}
	cg := e.cgroup("exiting")
	p := e.startIn(cg, nil, "sleep", "1000")
	id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitSignal(t, sigs, "ContainerNew", id)
	_ = p.Process.Kill()
	_ = p.Wait()
	waitSignal(t, sigs, "ContainerRemoved", id)
	info, err := c.Container(ctx, id)
	if err != nil || info.State != "exited" {
		t.Fatalf("after exit: state %q, %v", info.State, err)
	}
	d.stop()
}

func waitSignal(t *testing.T, sigs chan *godbus.Signal, member string, id contid.ID) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-sigs:
			if s.Name == client.ManagerInterface+"."+member && len(s.Body) == 2 && s.Body[0] == uint64(id) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s signal for %d within 10s", member, id)
		}
	}
}

// hasErrorName reports whether err is the D-Bus error name, from the
// typed client or straight from godbus.
func hasErrorName(err error, name string) bool {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	return client.IsRemote(err, name)
}

func readFile(p string) (string, error) {
	b, err := osReadFile(p)
	return string(b), err
}

var _ = strconv.Itoa

// Cgroups created under an autotag parent are tagged by the kernel at
// mkdir; contidd adopts them live (ContainerNew) and, after a SIGKILL,
// adopts those created while it was down.
func TestAutotagAdoption(t *testing.T) {
	e := newEnv(t, "")
	parent := e.cgroup("parent")
	d := e.start("--autotag-parents", parent)
	c := e.busClient()
	sigs := make(chan *godbus.Signal, 16)
	c.Conn().Signal(sigs)
	if err := c.Conn().AddMatchSignal(godbus.WithMatchInterface(client.ManagerInterface)); err != nil {
		t.Fatal(err)
	}
	live := e.cgroup("parent/live")
	id := waitListed(t, c, live)
	waitSignal(t, sigs, "ContainerNew", id)
	info, err := c.Container(context.Background(), id)
	if err != nil || !strings.Contains(strings.Join(info.Flags, " "), "autotag") {
		t.Fatalf("autotagged container: %+v, %v", info, err)
	}
	// The orchestrator's later "tag with any ID" names it instead of
	// failing (the nspawn drop-in does this); the ID stays write-once.
	named, err := c.TagCgroup(context.Background(), live, 0, client.TagOptions{Name: "live"})
	if err != nil || named != id {
		t.Fatalf("naming the autotagged cgroup: got %d, %v; want %d", named, err, id)
	}
	if info, err := c.Container(context.Background(), id); err != nil || info.Name != "live" {
		t.Fatalf("after naming: %+v, %v", info, err)
	}
	if _, err := c.TagCgroup(context.Background(), live, id+100, client.TagOptions{}); !hasErrorName(err, client.NameAlreadyTagged) {
		t.Fatalf("another ID for the autotagged cgroup: want AlreadyTagged, got %v", err)
	}
	if _, err := c.TagCgroup(context.Background(), live, 0, client.TagOptions{Name: "other"}); !hasErrorName(err, client.NameAlreadyTagged) {
		t.Fatalf("renaming the autotagged cgroup: want AlreadyTagged, got %v", err)
	}

	d.kill()
	c.Close()
	whileDown := e.cgroup("parent/while-down")
	e.start("--autotag-parents", parent)
	c = e.busClient()
	waitListed(t, c, whileDown)
	waitListed(t, c, live)
}

// waitListed waits until a container with cgroup cg is listed.
func waitListed(t *testing.T, c *client.Client, cg string) contid.ID {
	t.Helper()
	for i := 0; i < 100; i++ {
		list, err := c.ListContainers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, le := range list {
			if le.Cgroup == cg {
				return le.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no container for %s was listed within 5s", cg)
	return 0
}

// One user cannot exhaust the peer-to-peer socket: beyond its share its
// connections are closed, and root still gets in.
func TestP2PConnectionLimitPerUser(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	// go test's build directory is private to root: nobody runs a copy
	// of the test binary from the (world-readable) binary directory.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	holder := filepath.Join(filepath.Dir(contiddBinary(t)), "conn-holder")
	if err := os.WriteFile(holder, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The test binary itself, as nobody, holds the connections (TestMain).
	cmd := exec.CommandContext(ctx, holder)
	cmd.Env = append(os.Environ(), holdConnsEnv+"="+e.sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.Output(); close(done) }()
	// While nobody holds its share, root connects and is served.
	time.Sleep(500 * time.Millisecond)
	c := e.p2pClient()
	if _, lerr := c.ListContainers(context.Background()); lerr != nil {
		t.Fatalf("root was locked out: %v", lerr)
	}
	<-done
	if err != nil {
		t.Fatalf("connection holder: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "8" {
		t.Fatalf("contidd closed %s of nobody's 40 connections, want 8 (limit 32)\n%s", got, d.logText())
	}
}

const holdConnsEnv = "CONTID_TEST_HOLD_CONNS"

func TestMain(m *testing.M) {
	if sock := os.Getenv(holdConnsEnv); sock != "" {
		os.Exit(holdConns(sock))
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	code := m.Run()
	built := []string{binPath}
	variants.Range(func(_, v any) bool {
		built = append(built, v.(*variantBuild).path)
		return true
	})
	for _, p := range built {
		if p != "" {
			_ = os.RemoveAll(filepath.Dir(p))
		}
	}
	if helperDir != "" {
		_ = os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

// holdConns opens 40 connections and prints how many contidd closed.
func holdConns(sock string) int {
	var conns []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		conns = append(conns, c)
	}
	// Read all at once, with a deadline well inside contidd's 30s
	// authentication timeout, so only refusals read as EOF.
	deadline := time.Now().Add(2 * time.Second)
	var closed atomic.Int32
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			if _, err := c.Read(b[:]); errors.Is(err, io.EOF) {
				closed.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Println(closed.Load())
	return 0
}
