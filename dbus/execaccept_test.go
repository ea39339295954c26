package dbus_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/hostile"
)

// A process that connects to the socket and execs a setuid program before
// contidd accepts the connection (contidd busy or restarting; here
// stopped with SIGSTOP over both steps) is refused as having executed
// another program: its effective UID is no longer the one the kernel
// recorded at connect. Without that check it was held to the setuid
// program it had become, and its request went to polkit as that
// program's. The control is the same flow with the exec after the accept.
func TestExecBeforeAccept(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	suid := setuidCopy(t)
	helperBinary(t)
	const execed = "has executed another program"
	for i, tc := range []struct {
		name               string
		stopped, authFirst bool
	}{
		{"control: exec after accept", false, true},
		{"exec between connect and accept", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := execAfterConnect(t, e, d, suid, e.cgroup(fmt.Sprintf("victim-%d", i)), tc.stopped, tc.authFirst)
			if !strings.Contains(got, execed) {
				t.Fatalf("reply %q, want a refusal saying %q", got, execed)
			}
		})
	}
}

// execAfterConnect runs the helper execconnect as nobody in a cgroup of
// its own: it connects, execs the setuid copy of the test binary, which
// then asks to tag target. contidd is stopped from before the connect
// until after the exec, or not; the connector authenticates before its
// exec (contidd has accepted by then), or the setuid program does.
func execAfterConnect(t *testing.T, e *env, d *daemon, suid, target string, stopped, authFirst bool) string {
	cmd := exec.Command(helperBinary(t))
	cmd.Env = append(os.Environ(), helperEnv+"=execconnect", "CONTID_TEST_ADDR="+e.sock, "CONTID_TEST_SUID="+suid,
		"CONTID_TEST_TARGET="+target, "CONTID_TEST_AUTH_FIRST="+strconv.FormatBool(authFirst))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	defer placeIn(t, cmd, filepath.Join(e.cgRoot, e.cgroup("attacker")), nobody)()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if stopped {
		if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(d.cmd.Process.Pid, syscall.SIGCONT)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rd := bufio.NewReader(out)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "execd euid=0") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	waitEUID(t, cmd.Process.Pid, 0)
	if stopped {
		if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("helper reply: %v", err)
	}
	return strings.TrimSpace(line)
}

// helperExecConnect connects to CONTID_TEST_ADDR (the descriptor stays
// open across exec), authenticates first if CONTID_TEST_AUTH_FIRST, and
// execs CONTID_TEST_SUID as helperExecSuid.
func helperExecConnect() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: os.Getenv("CONTID_TEST_ADDR")}); err != nil {
		return err
	}
	authed := os.Getenv("CONTID_TEST_AUTH_FIRST") == "true"
	if authed {
		if err := saslExternal(fd); err != nil {
			return err
		}
	}
	suid := os.Getenv("CONTID_TEST_SUID")
	env := []string{helperEnv + "=execsuid", "CONTID_TEST_FD=" + strconv.Itoa(fd), "CONTID_TEST_AUTHED=" + strconv.FormatBool(authed),
		"CONTID_TEST_TARGET=" + os.Getenv("CONTID_TEST_TARGET")}
	return syscall.Exec(suid, []string{suid}, env)
}

// saslExternal does EXTERNAL as the real UID, byte by byte on a raw socket.
func saslExternal(fd int) error {
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	if _, err := unix.Write(fd, []byte("\x00AUTH EXTERNAL "+uid+"\r\n")); err != nil {
		return err
	}
	var line []byte
	var b [1]byte
	for !bytes.HasSuffix(line, []byte("\r\n")) {
		if n, err := unix.Read(fd, b[:]); err != nil || n == 0 {
			return fmt.Errorf("auth: %v (%q)", err, line)
		}
		line = append(line, b[0])
	}
	if !bytes.HasPrefix(line, []byte("OK ")) {
		return fmt.Errorf("auth: %q", line)
	}
	_, err := unix.Write(fd, []byte("BEGIN\r\n"))
	return err
}

// helperExecSuid runs setuid root on the connection its pre-exec self
// opened: it says so, waits for a line on stdin, then sends TagCgroup
// and prints the outcome.
func helperExecSuid() error {
	fmt.Printf("execd euid=%d\n", os.Geteuid())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	fd, _ := strconv.Atoi(os.Getenv("CONTID_TEST_FD"))
	if os.Getenv("CONTID_TEST_AUTHED") != "true" {
		if err := saslExternal(fd); err != nil {
			return err
		}
	}
	conn, err := net.FileConn(os.NewFile(uintptr(fd), "conn"))
	if err != nil {
		return err
	}
	msg := hostile.Message(2, client.BusName, client.ManagerPath, client.ManagerInterface, "TagCgroup", 0,
		os.Getenv("CONTID_TEST_TARGET"), uint64(0), map[string]godbus.Variant{})
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r, err := hostile.Await(conn, 2)
	if err != nil {
		return err
	}
	if r.Type == godbus.TypeError {
		name, _ := r.Headers[godbus.FieldErrorName].Value().(string)
		fmt.Printf("error %s: %v\n", name, r.Body)
		return nil
	}
	fmt.Printf("granted %v\n", r.Body)
	return nil
}
