package dbus_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/kernel/audit"
)

var (
	buildOnce sync.Once
	binPath   string // contidd; contidctl is next to it
	buildErr  error
	// buildFlags are extra `go build` flags for the binaries under test.
	buildFlags []string

	// raceBuild: the binaries are built with the race detector, whose
	// memory use says nothing about contidd's.
	raceBuild bool

	// variants are the test-only builds of contidd, by their -X flags.
	variants sync.Map // string -> *variantBuild
)

type variantBuild struct {
	once sync.Once
	path string
	err  error
}

// contiddVariant builds contidd once per test run with test-only
// switches set (-ldflags -X package.name=value, the package relative to
// the module).
func contiddVariant(t *testing.T, switches ...string) string {
	t.Helper()
	flags := "-ldflags="
	for i, sw := range switches {
		if i > 0 {
			flags += " "
		}
		flags += "-X github.com/contid/contid/" + sw
	}
	v, _ := variants.LoadOrStore(flags, &variantBuild{})
	b := v.(*variantBuild)
	b.once.Do(func() { b.path, b.err = buildContidd([]string{flags}) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// contiddBinary builds cmd/contidd once per test run: the tests run the
// real binary so that they can SIGKILL it.
func contiddBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath, buildErr = buildContidd(nil)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// contiddWithoutPeerPidfd is contidd built to pin peers the way it must
// on kernels before 6.5 (no SO_PEERPIDFD): pidfd_open at accept.
func contiddWithoutPeerPidfd(t *testing.T) string {
	return contiddVariant(t, "dbus/internal/p2p.usePeerPidfd=no")
}

// contiddUnconfirmed is the fallback build without the check that the
// process pinned at accept holds the connection: the control of the
// attack that check stops.
func contiddUnconfirmed(t *testing.T) string {
	return contiddVariant(t, "dbus/internal/p2p.usePeerPidfd=no", "dbus/internal/p2p.confirmConnector=no")
}

// contiddUnrelayed reads the system bus with godbus directly, without
// the relay that screens what godbus decodes: the control of the attacks
// the relay stops.
func contiddUnrelayed(t *testing.T) string {
	return contiddVariant(t, "dbus.relayBus=no")
}

func buildContidd(flags []string) (string, error) {
	dir, err := os.MkdirTemp("", "contidd-bin-")
	if err != nil {
		return "", err
	}
	// nobody runs contidctl from here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	args := append(append(append([]string{"build"}, buildFlags...), flags...), "-o", dir, "github.com/contid/contid/cmd/contidd", "github.com/contid/contid/cmd/contidctl")
	out, err := exec.Command(gobin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build contidd: %v\n%s", err, out)
	}
	return filepath.Join(dir, "contidd"), nil
}

// requireIntegration is the single gate of the integration tests: root,
// tracking-mode eBPF, and a dbus-daemon and busctl to talk to.
func requireIntegration(t *testing.T) {
	t.Helper()
	testenv.RequireBPF(t)
	testenv.RequireCommand(t, "dbus-daemon", "busctl", "setpriv")
}

// env is one private bus plus the per-test paths a contidd uses.
type env struct {
	t       *testing.T
	busAddr string
	dir     string
	state   string
	pin     string
	sock    string
	conf    string
	cgRoot  string
	cgBase  string // our own cgroup, relative to cgRoot
}

func newEnv(t *testing.T, conf string, busPolicies ...string) *env {
	t.Helper()
	requireIntegration(t)
	e := &env{t: t, busAddr: testenv.DBusDaemon(t, busPolicies...)}
	// nobody must reach the peer-to-peer socket in here, so not
	// t.TempDir, whose parent is 0700.
	dir, err := os.MkdirTemp("", "contidd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	e.state = filepath.Join(e.dir, "state")
	e.sock = filepath.Join(e.dir, "bus")
	e.conf = filepath.Join(e.dir, "contid.conf")
	// The host's kernel audit rules are not the tests' to change: a
	// contidd loads contid's rules by default, and they outlive it. Nor
	// are a dockerd's containers on the host the tests' to name.
	conf += "\n[Manager]\nDockerSocket=\n[Audit]\nLoadRules=no\n"
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	var root string
	e.pin = "/sys/fs/bpf/contid-dbustest-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { _ = os.RemoveAll(e.pin) })
	root, err = kernel.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	e.cgRoot = root
	e.cgBase = "/contid-dbustest-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(filepath.Join(root, e.cgBase), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroupTree(t, filepath.Join(root, e.cgBase)) })
	return e
}

// removeCgroupTree ends whatever the test left running in its cgroup tree
// (children of the processes it started, like sh's sleep) through
// cgroup.kill, then removes the cgroups, deepest first.
func removeCgroupTree(t *testing.T, dir string) {
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || strings.Contains(string(b), "populated 0") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for try := 0; try < 50; try++ {
			if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("remove cgroup %s: %v", dirs[i], err)
		}
	}
}

// cgroup creates a child cgroup of the test's own and returns its path
// relative to the cgroup2 root.
func (e *env) cgroup(name string) string {
	e.t.Helper()
	rel := e.cgBase + "/" + name
	if err := os.MkdirAll(filepath.Join(e.cgRoot, rel), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return rel
}

// placeIn makes cmd start inside the cgroup at path (CLONE_INTO_CGROUP),
// as cred unless it is nil; the rest of cmd.SysProcAttr is kept. The
// cgroup's descriptor stays open until release is called, which may be
// once cmd has started: defer placeIn(...)().
func placeIn(t testing.TB, cmd *exec.Cmd, path string, cred *syscall.Credential) (release func()) {
	t.Helper()
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	if cred != nil {
		cmd.SysProcAttr.Credential = cred
	}
	return func() { syscall.Close(fd) }
}

// startIn starts a command inside cgroup rel (CLONE_INTO_CGROUP) and ends
// it by PID at cleanup.
func (e *env) startIn(rel string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	defer placeIn(e.t, cmd, filepath.Join(e.cgRoot, rel), cred)()
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s in %s: %v", name, rel, err)
	}
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// daemon is one running contidd.
type daemon struct {
	e   *env
	cmd *exec.Cmd
	log *strings.Builder
	mu  *sync.Mutex
}

// start runs contidd and waits for READY=1 on a private NOTIFY_SOCKET,
// which also proves the readiness protocol.
func (e *env) start(extra ...string) *daemon {
	e.t.Helper()
	return e.startWith(daemonOptions{}, extra...)
}

// daemonOptions choose another build of contidd, or a cgroup (relative
// to the cgroup2 root) to run it in.
type daemonOptions struct {
	binary string
	cgroup string
}

func (e *env) startWith(o daemonOptions, extra ...string) *daemon {
	e.t.Helper()
	nsock := filepath.Join(e.dir, fmt.Sprintf("notify-%d", time.Now().UnixNano()))
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		e.t.Fatal(err)
	}
	defer nconn.Close()
	args := append([]string{
		"--config", e.conf, "--bus-address", e.busAddr, "--socket", e.sock,
		"--state-directory", e.state, "--pin-directory", e.pin, "--mode", "tracking",
		"--autotag-parents", "none", "--log-level", "debug",
	}, extra...)
	bin := o.binary
	if bin == "" {
		bin = contiddBinary(e.t)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if o.cgroup != "" {
		defer placeIn(e.t, cmd, filepath.Join(e.cgRoot, o.cgroup), nil)()
	}
	d := &daemon{e: e, cmd: cmd, log: &strings.Builder{}, mu: &sync.Mutex{}}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() {
		d.kill()
		if strings.Contains(d.logText(), "DATA RACE") {
			e.t.Errorf("the race detector fired in contidd:\n%s", d.logText())
		}
	})
	_ = nconn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := nconn.Read(buf)
		if err != nil {
			e.t.Fatalf("contidd sent no READY=1: %v\nlog:\n%s", err, d.logText())
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return d
		}
	}
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// kill ends contidd with SIGKILL, as a crash would, and then does what
// the unit's ExecStopPost does.
func (d *daemon) kill() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_ = d.cmd.Wait()
	dropAuditExemption()
}

// dropAuditExemption removes the audit exemption of a contidd that is
// gone (contidd exempts its own calls when another audit daemon runs).
// The rule names its PID: left behind, it would exempt any root process
// that takes the PID over, such as an exec of another package's test that
// counts its execs in the journal.
func dropAuditExemption() {
	ctl, err := audit.NewControl()
	if err != nil {
		return
	}
	defer ctl.Close()
	_ = ctl.DropExemptions()
}

// stop ends contidd with SIGTERM and checks it exits cleanly.
func (d *daemon) stop() {
	d.e.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.e.t.Errorf("contidd exited with %v after SIGTERM\nlog:\n%s", err, d.logText())
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
		dropAuditExemption()
		d.e.t.Fatalf("contidd did not stop within 15s of SIGTERM")
	}
}

func (d *daemon) alive() bool {
	return d.cmd.ProcessState == nil && d.cmd.Process.Signal(syscall.Signal(0)) == nil
}

func (e *env) busClient() *client.Client {
	e.t.Helper()
	c, err := client.ConnectBus(e.busAddr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) p2pClient() *client.Client {
	e.t.Helper()
	c, err := client.ConnectP2P(e.sock)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// busctl runs busctl against address, optionally as nobody, and returns
// its output and error.
func busctl(asNobody bool, address string, args ...string) (string, error) {
	argv := append([]string{"--address=" + address}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if asNobody {
		cmd = exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", "busctl"}, argv...)...)
	} else {
		cmd = exec.CommandContext(ctx, "busctl", argv...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var osReadFile = os.ReadFile
