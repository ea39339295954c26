package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DBusDaemon starts a private system-bus dbus-daemon that enforces the
// stock system policy plus contid's own units/org.contid1.conf, and returns
// its address. The daemon is stopped when the test ends.
//
// The config is a copy of /usr/share/dbus-1/system.conf with <listen>
// moved to a temp socket and <pidfile> dropped, so it never touches the
// host's bus; its relative <includedir>system.d</includedir> then resolves
// next to the copy, where the policy file is placed, with any extra
// policy files given (each a whole <busconfig>: a test's stand-in for
// another system service, such as polkit, needs leave to own its name).
func DBusDaemon(t testing.TB, extraPolicies ...string) string {
	t.Helper()
	RequireCommand(t, "dbus-daemon")
	stock, err := os.ReadFile("/usr/share/dbus-1/system.conf")
	if err != nil {
		Missing(t, "skipped: no system bus config to copy: %v", err)
	}
	policy, err := os.ReadFile(filepath.Join(repoRoot(t), "units", "org.contid1.conf"))
	if err != nil {
		t.Fatalf("read the project's D-Bus policy: %v", err)
	}

	// The daemon drops to user messagebus, and tests connect as nobody:
	// both must reach the socket, so not t.TempDir (its parent is 0700).
	dir, err := os.MkdirTemp("", "contid-dbus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "system_bus_socket")
	conf := string(stock)
	conf = regexp.MustCompile(`(?s)<listen>.*?</listen>`).ReplaceAllString(conf, "<listen>unix:path="+sock+"</listen>")
	conf = regexp.MustCompile(`(?s)<pidfile>.*?</pidfile>`).ReplaceAllString(conf, "")
	// Only our policy: never the host's /etc/dbus-1/system.d drop-ins.
	conf = regexp.MustCompile(`(?s)<includedir>/etc/dbus-1/system.d</includedir>`).ReplaceAllString(conf, "")
	conf = regexp.MustCompile(`(?s)<include[^d][^>]*>[^<]*</include>`).ReplaceAllString(conf, "")
	if !strings.Contains(conf, "<includedir>system.d</includedir>") {
		conf = strings.Replace(conf, "</busconfig>", "<includedir>system.d</includedir>\n</busconfig>", 1)
	}
	if err := os.Mkdir(filepath.Join(dir, "system.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "system.d", "org.contid1.conf"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, extra := range extraPolicies {
		name := filepath.Join(dir, "system.d", "test-"+strconv.Itoa(i)+".conf")
		if err := os.WriteFile(name, []byte(extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	confPath := filepath.Join(dir, "system.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("dbus-daemon", "--nofork", "--print-address=1", "--config-file="+confPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := startTiedToTest(cmd); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addrCh := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addrCh <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-addrCh:
		if addr == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		return addr
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not start within 10s")
	}
	return ""
}

// repoRoot finds the module root from this source file, so tests in any
// package find units/.
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate testenv source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}
