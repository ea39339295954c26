package daemon_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
)

// contiddOnce builds cmd/contidd once per test run: these tests run the
// real binary, with systemd's environment (NOTIFY_SOCKET, WATCHDOG_USEC)
// and signals, as the unit does.
var contiddOnce struct {
	sync.Once
	path string
	err  error
}

func contiddBinary(t *testing.T) string {
	t.Helper()
	contiddOnce.Do(func() {
		dir, err := os.MkdirTemp("", "contidd-daemon-bin-")
		if err != nil {
			contiddOnce.err = err
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(gobin, "build", "-o", dir, "github.com/contid/contid/cmd/contidd").CombinedOutput()
		if err != nil {
			contiddOnce.err = fmt.Errorf("build contidd: %v\n%s", err, out)
			return
		}
		contiddOnce.path = filepath.Join(dir, "contidd")
	})
	if contiddOnce.err != nil {
		t.Fatal(contiddOnce.err)
	}
	return contiddOnce.path
}

// daemonEnv is one contidd under test: its directory, configuration,
// systemd notify socket and log.
type daemonEnv struct {
	t      *testing.T
	dir    string
	conf   string
	sock   string
	pin    string
	notify *notifySocket
	cmd    *exec.Cmd
	log    *lineLog
}

// newDaemonEnv prepares (and does not start) a contidd with the given
// configuration text. It serves no system bus, tags no autotag parent
// and loads no audit rules: the host's are not the tests' to change.
func newDaemonEnv(t *testing.T, conf string) *daemonEnv {
	t.Helper()
	testenv.RequireBPF(t)
	dir := t.TempDir()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	e := &daemonEnv{t: t, dir: dir, conf: filepath.Join(dir, "contid.conf"), sock: filepath.Join(dir, "bus"),
		pin: "/sys/fs/bpf/contid-daemontest-" + hex.EncodeToString(rnd[:])}
	t.Cleanup(func() { _ = os.RemoveAll(e.pin) })
	full := fmt.Sprintf("[Manager]\nAutotagParents=\nDockerSocket=\nSocket=%s\nStateDirectory=%s\nPinDirectory=%s\n%s\n",
		e.sock, filepath.Join(dir, "state"), e.pin, conf)
	if !strings.Contains(conf, "[Audit]") {
		full += "[Audit]\n"
	}
	full += "LoadRules=no\n"
	if err := os.WriteFile(e.conf, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	e.notify = listenNotify(t, filepath.Join(dir, "notify"))
	return e
}

// start runs contidd with extra environment and flags, and waits for
// READY=1.
func (e *daemonEnv) start(env []string, flags ...string) {
	t := e.t
	t.Helper()
	args := append([]string{"--config", e.conf, "--no-bus"}, flags...)
	e.cmd = exec.Command(contiddBinary(t), args...)
	e.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+e.notify.path), env...)
	stderr, err := e.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	e.log = newLineLog(stderr)
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = e.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("contidd log:\n%s", e.log.String())
		}
	})
	if !e.notify.waitFor("READY=1", 20*time.Second) {
		t.Fatalf("contidd did not send READY=1; log:\n%s", e.log.String())
	}
}

// notifySocket is a systemd notify socket: it records each message
// contidd sends, with the time it arrived.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifySocket{path: path}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			for _, line := range strings.Split(string(buf[:k]), "\n") {
				n.msgs = append(n.msgs, notifyMsg{time.Now(), line})
			}
			n.mu.Unlock()
		}
	}()
	return n
}

// count is how many messages equal to text arrived after since.
func (n *notifySocket) count(text string, since time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m.text == text && m.at.After(since) {
			c++
		}
	}
	return c
}

// waitFor waits until a message equal to text arrives after nothing in
// particular (any time so far counts).
func (n *notifySocket) waitFor(text string, timeout time.Duration) bool {
	return n.waitSince(text, time.Time{}, timeout)
}

func (n *notifySocket) waitSince(text string, since time.Time, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n.count(text, since) > 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// lineLog keeps what contidd writes to stderr.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func newLineLog(r io.Reader) *lineLog {
	l := &lineLog{}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor waits for a line containing s.
func (l *lineLog) waitFor(s string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, line := range l.lines {
			if strings.Contains(line, s) {
				l.mu.Unlock()
				return line, true
			}
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return "", false
}
