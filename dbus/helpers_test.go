package dbus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/hostile"
	"github.com/contid/contid/internal/testenv"
)

// The test binary doubles as the helper processes the attacks need: it
// runs as another user, in another cgroup, or setuid root. TestMain hands
// it to runHelper when helperEnv names a mode.
const helperEnv = "CONTID_TEST_HELPER"

var (
	helperOnce sync.Once
	helperDir  string
	helperPath string
	helperErr  error
)

// helperBinary is a copy of the test binary that every user may run (go
// test's build directory is private to root).
func helperBinary(t *testing.T) string {
	t.Helper()
	helperOnce.Do(func() {
		var self string
		if self, helperErr = os.Executable(); helperErr != nil {
			return
		}
		if helperDir, helperErr = os.MkdirTemp("", "contid-helper-"); helperErr != nil {
			return
		}
		if helperErr = os.Chmod(helperDir, 0o755); helperErr != nil {
			return
		}
		helperPath = filepath.Join(helperDir, "helper")
		helperErr = copyFile(self, helperPath, 0o755)
	})
	if helperErr != nil {
		t.Fatal(helperErr)
	}
	return helperPath
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

func runHelper(mode string) int {
	var err error
	switch mode {
	case "partial":
		err = helperPartial()
	case "holder":
		err = helperHolder()
	case "sleep":
		time.Sleep(time.Hour)
	case "hostile":
		err = helperHostile()
	case "busfds":
		err = helperBusFDs()
	case "connections":
		err = helperConnections()
	case "connector":
		err = helperConnector()
	case "pipelined":
		err = helperPipelined()
	case "tagger":
		err = helperTagger()
	case "execconnect":
		err = helperExecConnect()
	case "execsuid":
		err = helperExecSuid()
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// partialCall is the attack of the setuid and PID-reuse tests: connect
// (to the socket or the bus), send all of a TagCgroup call but its last
// byte, hand the connection to a child (the holder), and then exec a
// program, exit, or stay, as CONTID_TEST_THEN says. The holder sends the
// last byte when the test writes a line to it and prints the reply.
type partialCall struct {
	addr   string // socket path
	bus    bool   // addr is a dbus-daemon's: say Hello and address org.contid1
	target string // the cgroup to tag
	then   string // "exec:PATH", "exit" or "stay"
}

func helperPartial() error {
	p := partialCall{addr: os.Getenv("CONTID_TEST_ADDR"), bus: os.Getenv("CONTID_TEST_BUS") == "1",
		target: os.Getenv("CONTID_TEST_TARGET"), then: os.Getenv("CONTID_TEST_THEN")}
	c, err := hostile.Connect(p.addr, false)
	if err != nil {
		return err
	}
	rd, err := hostile.Hello(c)
	if err != nil {
		return err
	}
	if rd.Buffered() > 0 && !p.bus {
		return fmt.Errorf("%d unexpected bytes after the Hello reply", rd.Buffered())
	}
	msg := hostile.Message(2, client.BusName, client.ManagerPath, client.ManagerInterface, "TagCgroup", 0, p.target, uint64(0), map[string]godbus.Variant{})
	if _, err := c.Write(msg[:len(msg)-1]); err != nil {
		return err
	}
	f, err := c.File()
	if err != nil {
		return err
	}
	holder := exec.Command(os.Args[0])
	holder.Env = append(os.Environ(), helperEnv+"=holder", fmt.Sprintf("CONTID_TEST_LAST=%d", msg[len(msg)-1]))
	holder.ExtraFiles = []*os.File{f, os.NewFile(3, "go")}
	holder.Stdout, holder.Stderr = os.Stdout, os.Stderr
	if err := holder.Start(); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", holder.Process.Pid)
	f.Close()
	c.Close()
	switch {
	case strings.HasPrefix(p.then, "exec:"):
		path := strings.TrimPrefix(p.then, "exec:")
		env := []string{helperEnv + "=sleep"}
		return syscall.Exec(path, []string{path}, env)
	case p.then == "exit":
		return nil
	default:
		time.Sleep(time.Hour)
	}
	return nil
}

// helperHolder: fd 3 is the connection, fd 4 the line that says go.
func helperHolder() error {
	conn, err := net.FileConn(os.NewFile(3, "conn"))
	if err != nil {
		return err
	}
	if _, err := bufio.NewReader(os.NewFile(4, "go")).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting to go: %w", err)
	}
	last, _ := strconv.Atoi(os.Getenv("CONTID_TEST_LAST"))
	if _, err := conn.Write([]byte{byte(last)}); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, err := hostile.Await(bufio.NewReader(conn), 2)
	if err != nil {
		fmt.Printf("no reply: %v\n", err)
		return nil
	}
	if reply.Type == godbus.TypeError {
		name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
		fmt.Printf("error %s: %v\n", name, reply.Body)
		return nil
	}
	fmt.Printf("granted %v\n", reply.Body)
	return nil
}

// attack is one run of helperPartial, driven by the test.
type attack struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *bufio.Reader
	goPipe  *os.File
	holder  int
	exitErr chan error
}

// startPartial runs the partial-call helper as cred in cgroup cg.
func (e *env) startPartial(p partialCall, cred *syscall.Credential, cg string) *attack {
	e.t.Helper()
	or, ow, err := os.Pipe()
	if err != nil {
		e.t.Fatal(err)
	}
	gr, gw, err := os.Pipe()
	if err != nil {
		e.t.Fatal(err)
	}
	bus := "0"
	if p.bus {
		bus = "1"
	}
	cmd := exec.Command(helperBinary(e.t))
	cmd.Env = append(os.Environ(), helperEnv+"=partial", "CONTID_TEST_ADDR="+p.addr, "CONTID_TEST_BUS="+bus,
		"CONTID_TEST_TARGET="+p.target, "CONTID_TEST_THEN="+p.then)
	cmd.Stdout, cmd.Stderr = ow, os.Stderr
	cmd.ExtraFiles = []*os.File{gr}
	defer placeIn(e.t, cmd, filepath.Join(e.cgRoot, cg), cred)()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ow.Close()
	gr.Close()
	a := &attack{t: e.t, cmd: cmd, out: bufio.NewReader(or), goPipe: gw, exitErr: make(chan error, 1)}
	go func() { a.exitErr <- cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if a.holder > 0 {
			_ = syscall.Kill(a.holder, syscall.SIGKILL)
		}
		gw.Close()
		or.Close()
	})
	line, err := a.readLine(20 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ready ") {
		e.t.Fatalf("partial-call helper: %q, %v", line, err)
	}
	a.holder, _ = strconv.Atoi(strings.TrimPrefix(line, "ready "))
	return a
}

func (a *attack) readLine(timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := a.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(timeout):
		return "", fmt.Errorf("nothing within %v", timeout)
	}
}

// finish lets the holder send the last byte and returns what came back:
// "granted ..." or "error NAME: ...".
func (a *attack) finish() string {
	a.t.Helper()
	if _, err := a.goPipe.Write([]byte("go\n")); err != nil {
		a.t.Fatal(err)
	}
	line, err := a.readLine(40 * time.Second)
	if err != nil {
		a.t.Fatalf("holder: %v", err)
	}
	return line
}

// hostileRun is one hostile helper process: n connections of each kind,
// as one user, for a while.
type hostileRun struct {
	cmd *exec.Cmd
	out strings.Builder
}

func helperHostile() error {
	n, _ := strconv.Atoi(os.Getenv("CONTID_TEST_HOSTILE_N"))
	d, err := time.ParseDuration(os.Getenv("CONTID_TEST_HOSTILE_FOR"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return json.NewEncoder(os.Stdout).Encode(hostile.AttackAll(ctx, os.Getenv("CONTID_TEST_ADDR"), n))
}

func (e *env) startHostile(uid uint32, perKind int, d time.Duration) *hostileRun {
	e.t.Helper()
	h := &hostileRun{}
	h.cmd = exec.Command(helperBinary(e.t))
	h.cmd.Env = append(os.Environ(), helperEnv+"=hostile", "CONTID_TEST_ADDR="+e.sock,
		fmt.Sprintf("CONTID_TEST_HOSTILE_N=%d", perKind), "CONTID_TEST_HOSTILE_FOR="+d.String())
	h.cmd.Stdout, h.cmd.Stderr = &h.out, os.Stderr
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = h.cmd.Process.Kill(); _ = h.cmd.Wait() })
	return h
}

func (h *hostileRun) wait(t *testing.T) []hostile.Stats {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("hostile helper: %v", err)
	}
	var st []hostile.Stats
	if err := json.Unmarshal([]byte(h.out.String()), &st); err != nil {
		t.Fatalf("hostile helper output %q: %v", h.out.String(), err)
	}
	return st
}

// usage samples a process's memory and descriptors.
type usage struct {
	mu        sync.Mutex
	maxRSSKB  int64
	hwmKB     int64
	maxFDs    int
	lastFDs   int
	stop      chan struct{}
	done      chan struct{}
	pid       int
	readError error
}

func sampleUsage(pid int, every time.Duration) *usage {
	u := &usage{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			u.sample()
			select {
			case <-u.stop:
				return
			case <-t.C:
			}
		}
	}()
	return u
}

func (u *usage) sample() {
	rss, hwm, err := statusKB(u.pid)
	fds, ferr := os.ReadDir(fmt.Sprintf("/proc/%d/fd", u.pid))
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil || ferr != nil {
		if u.readError == nil {
			u.readError = fmt.Errorf("%v %v", err, ferr)
		}
		return
	}
	u.maxRSSKB = max(u.maxRSSKB, rss)
	u.hwmKB = max(u.hwmKB, hwm)
	u.maxFDs = max(u.maxFDs, len(fds))
	u.lastFDs = len(fds)
}

func (u *usage) finish() {
	close(u.stop)
	<-u.done
}

func statusKB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// fdsSettle waits up to 5 s for pid to hold at most want descriptors and
// returns what it holds then. contidd opens short-lived descriptors of its
// own (a netlink socket to check its audit exemption, a pidfd to look up a
// caller): one count can catch them, but a kept descriptor stays.
func fdsSettle(t *testing.T, pid, want int) int {
	t.Helper()
	n := fdCount(t, pid)
	for deadline := time.Now().Add(5 * time.Second); n > want && time.Now().Before(deadline); n = fdCount(t, pid) {
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// fdList names what pid's descriptors point at, for a failure message.
func fdList(pid int) []string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		out = append(out, e.Name()+"="+l)
	}
	return out
}

// unitLimits reads LimitNOFILE= and MemoryMax= from the shipped unit.
func unitLimits(t *testing.T) (nofile int, memoryMax int64) {
	t.Helper()
	b, err := os.ReadFile("../units/contidd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "LimitNOFILE":
			nofile, err = strconv.Atoi(v)
		case "MemoryMax":
			memoryMax, err = parseSize(v)
		}
		if err != nil {
			t.Fatalf("units/contidd.service: %s=%s: %v", k, v, err)
		}
	}
	if nofile == 0 || memoryMax == 0 {
		t.Fatal("units/contidd.service sets no LimitNOFILE= or MemoryMax=")
	}
	return nofile, memoryMax
}

// parseSize reads systemd's sizes: a number with an optional K, M or G
// (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// setuidCopy is a copy of the test binary owned by root with the setuid
// bit, on a mount that honours it; the test skips where no such mount is
// at hand.
func setuidCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "contid-setuid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&unix.ST_NOSUID != 0 {
		testenv.Missing(t, "skipped: %s is on a nosuid mount, so no setuid program can run from it", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "setuid-root")
	if err := copyFile(helperBinary(t), p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitEUID waits until process pid runs with effective UID euid.
func waitEUID(t *testing.T, pid int, euid int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "Uid:")); strings.HasPrefix(line, "Uid:") && len(f) >= 2 && f[1] == strconv.Itoa(euid) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never ran with euid %d", pid, euid)
}

func busPath(addr string) string {
	for _, part := range strings.Split(strings.TrimPrefix(addr, "unix:"), ",") {
		if p, ok := strings.CutPrefix(part, "path="); ok {
			return p
		}
	}
	return ""
}

// helperBusFDs sends contidd a Ping with two descriptors through the bus
// at CONTID_TEST_ADDR and prints how the bus answered: "reply" or
// "error NAME".
func helperBusFDs() error {
	c, err := hostile.Connect(os.Getenv("CONTID_TEST_ADDR"), true)
	if err != nil {
		return err
	}
	rd, err := hostile.Hello(c)
	if err != nil {
		return err
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ping := hostile.Message(2, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Peer", "Ping", 2)
	if _, _, err := c.WriteMsgUnix(ping, unix.UnixRights(null, null), nil); err != nil {
		return err
	}
	reply, err := hostile.Await(rd, 2)
	if err != nil {
		return err
	}
	if reply.Type == godbus.TypeError {
		name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
		fmt.Println("error " + name)
		return nil
	}
	fmt.Println("reply")
	return nil
}

// helperConnections opens CONTID_TEST_N connections to the socket at
// CONTID_TEST_ADDR, prints how many had their Hello answered, and holds
// them until it is killed.
func helperConnections() error {
	n, err := strconv.Atoi(os.Getenv("CONTID_TEST_N"))
	if err != nil {
		return err
	}
	var held []*net.UnixConn
	for i := 0; i < n; i++ {
		c, err := hostile.Connect(os.Getenv("CONTID_TEST_ADDR"), false)
		if err != nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := hostile.Hello(c); err != nil {
			c.Close()
			continue
		}
		held = append(held, c)
	}
	fmt.Println(len(held))
	time.Sleep(time.Hour)
	return nil
}

// helperConnector connects to the socket at CONTID_TEST_ADDR, sends SASL,
// Hello and a TagCgroup of CONTID_TEST_TARGET in one write (the kernel
// completes a connection in the listen backlog, whether contidd accepts
// it or not), hands the connection to a child and exits. The child
// prints the reply to the TagCgroup call.
func helperConnector() error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: os.Getenv("CONTID_TEST_ADDR"), Net: "unix"})
	if err != nil {
		return err
	}
	b := []byte{0}
	b = append(b, fmt.Sprintf("AUTH EXTERNAL %x\r\nBEGIN\r\n", strconv.Itoa(os.Getuid()))...)
	b = append(b, hostile.Message(1, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", 0)...)
	b = append(b, hostile.Message(2, client.BusName, client.ManagerPath, client.ManagerInterface, "TagCgroup", 0,
		os.Getenv("CONTID_TEST_TARGET"), uint64(0), map[string]godbus.Variant{})...)
	if _, err := c.Write(b); err != nil {
		return err
	}
	f, err := c.File()
	if err != nil {
		return err
	}
	h := exec.Command(os.Args[0])
	h.Env = append(os.Environ(), helperEnv+"=pipelined")
	h.ExtraFiles = []*os.File{f}
	h.Stdout, h.Stderr = os.Stdout, os.Stderr
	if err := h.Start(); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", h.Process.Pid)
	return nil
}

// helperPipelined reads the replies on descriptor 3 and prints the one to
// serial 2: "granted ..." or "error NAME".
func helperPipelined() error {
	conn, err := net.FileConn(os.NewFile(3, "conn"))
	if err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := rd.ReadString('\n'); err != nil {
		return fmt.Errorf("SASL: %w", err)
	}
	r, err := hostile.Await(rd, 2)
	if err != nil {
		fmt.Printf("no reply: %v\n", err)
		return nil
	}
	if r.Type == godbus.TypeError {
		fmt.Printf("error %v\n", r.Headers[godbus.FieldErrorName].Value())
		return nil
	}
	fmt.Printf("granted %v\n", r.Body)
	return nil
}
