package dbus_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/hostile"
)

// Descriptors a message brings beyond what its header announces are
// closed, not kept for later: contidd holds no more after 20 such
// messages than before, a call cannot take a descriptor another message
// brought, and a message with more descriptors than any call takes ends
// the connection. The control: the same pidfd, announced by the call that
// carries it, is used.
func TestP2PDescriptors(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	pid := d.cmd.Process.Pid
	c := e.p2pClient()
	ctx := context.Background()

	conn, rd := rawP2P(t, e.sock)
	time.Sleep(time.Second) // contidd has settled after its start
	before := fdCount(t, pid)
	beforeList := fdList(pid)
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	for serial := uint32(2); serial < 22; serial++ {
		ping := hostile.Message(serial, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Peer", "Ping", 0)
		if _, _, err := conn.WriteMsgUnix(ping, unix.UnixRights(null, null, null, null), nil); err != nil {
			t.Fatal(err)
		}
		if reply, err := hostile.Await(rd, serial); err != nil || reply.Type != godbus.TypeMethodReply {
			t.Fatalf("Ping %d with unannounced descriptors: %v %v", serial, reply, err)
		}
	}
	if after := fdsSettle(t, pid, before); after > before {
		t.Fatalf("contidd holds %d descriptors after 20 Pings with 4 unannounced each, %d before\nbefore: %v\nafter: %v", after, before, beforeList, fdList(pid))
	}

	// A pidfd sent with a Ping, then a TagProcess that announces one
	// descriptor and brings none.
	p := e.startIn(e.cgroup("fresh"), nil, "sleep", "1000")
	pidfd, err := unix.PidfdOpen(p.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	ping := hostile.Message(30, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Peer", "Ping", 0)
	if _, _, err := conn.WriteMsgUnix(ping, unix.UnixRights(pidfd), nil); err != nil {
		t.Fatal(err)
	}
	tagProcess := func(serial uint32) []byte {
		return hostile.Message(serial, client.BusName, client.ManagerPath, client.ManagerInterface, "TagProcess", 1,
			godbus.UnixFDIndex(0), uint64(0), map[string]godbus.Variant{})
	}
	if _, err := conn.Write(tagProcess(31)); err != nil {
		t.Fatal(err)
	}
	if _, err := hostile.Await(rd, 31); !closedByPeer(err) {
		t.Fatalf("a TagProcess without its announced descriptor: %v, want the connection closed", err)
	}
	if _, err := c.GetContainerByPID(ctx, uint32(p.Process.Pid)); !errors.Is(err, contid.ErrNoSuchContainer) {
		t.Fatalf("process %d was tagged with a descriptor another message brought: %v", p.Process.Pid, err)
	}

	// Control: the call that carries and announces it uses it.
	conn2, rd2 := rawP2P(t, e.sock)
	if _, _, err := conn2.WriteMsgUnix(tagProcess(2), unix.UnixRights(pidfd), nil); err != nil {
		t.Fatal(err)
	}
	if reply, err := hostile.Await(rd2, 2); err != nil || reply.Type != godbus.TypeMethodReply {
		t.Fatalf("TagProcess with its own pidfd: %v %v", reply, err)
	}
	if _, err := c.GetContainerByPID(ctx, uint32(p.Process.Pid)); err != nil {
		t.Fatalf("the control was not tagged: %v", err)
	}

	// More descriptors than any call takes end the connection.
	many := make([]int, 64)
	for i := range many {
		many[i] = null
	}
	ping = hostile.Message(3, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Peer", "Ping", 0)
	if _, _, err := conn2.WriteMsgUnix(ping, unix.UnixRights(many...), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := hostile.Await(rd2, 3); !closedByPeer(err) {
		t.Fatalf("a Ping with 64 descriptors: %v, want the connection closed", err)
	}
	if after := fdsSettle(t, pid, before); after > before {
		t.Fatalf("contidd holds %d descriptors, %d before", after, before)
	}
}

// rawP2P is a root connection that agreed on descriptor passing and said
// Hello.
func rawP2P(t *testing.T, sock string) (*net.UnixConn, *bufio.Reader) {
	t.Helper()
	conn, err := hostile.Connect(sock, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rd, err := hostile.Hello(conn)
	if err != nil {
		t.Fatal(err)
	}
	return conn, rd
}

// closedByPeer: the read failed because the other end closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNRESET)
}

// On the bus, contidd's D-Bus library cannot reach a descriptor a message
// brings without naming it, so the bus policy lets no user but root send
// contidd any: nobody's message with two is refused by dbus-daemon, and
// contidd's descriptors stay as they were. The control: root's Ping with
// no descriptor is answered (and TestTagProcessPidfd passes root's pidfd).
func TestBusRefusesUsersDescriptors(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	pid := d.cmd.Process.Pid
	if err := e.busClient().Conn().Object(client.BusName, client.ManagerPath).Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		t.Fatalf("root's Ping: %v", err)
	}
	time.Sleep(time.Second) // contidd has settled after its start
	before := fdCount(t, pid)
	cmd := exec.Command(helperBinary(t))
	cmd.Env = append(os.Environ(), helperEnv+"=busfds", "CONTID_TEST_ADDR="+busPath(e.busAddr))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "error org.freedesktop.DBus.Error.AccessDenied" {
		t.Fatalf("nobody's Ping with two descriptors: %q, want the bus's AccessDenied", got)
	}
	if after := fdsSettle(t, pid, before); after > before {
		t.Fatalf("contidd holds %d descriptors, %d before", after, before)
	}
}

// On the bus, root's call with a descriptor is refused unless it is
// TagProcess naming that descriptor, and contidd keeps none of them:
// godbus drops a message whose index is out of range, and answers Peer
// and unknown objects itself, without closing their descriptors. (An
// index named twice is refused the same way; the bus policy lets no call
// bring two.) The control: TagProcess naming its one descriptor is
// answered, and the descriptor is closed too.
func TestBusDescriptorIndexes(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	pid := d.cmd.Process.Pid
	conn, err := hostile.Connect(busPath(e.busAddr), true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rd, err := hostile.Hello(conn)
	if err != nil {
		t.Fatal(err)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	nulls := func() int {
		n := 0
		for _, f := range fdList(pid) {
			if strings.HasSuffix(f, "=/dev/null") {
				n++
			}
		}
		return n
	}
	serial := uint32(10)
	tagArgs := func(idx uint32) []any { return []any{godbus.UnixFDIndex(idx), uint64(0), map[string]godbus.Variant{}} }
	for _, tc := range []struct {
		name          string
		path          godbus.ObjectPath
		iface, member string
		fds           int
		body          []any
		want          string // the error's name
		text          string // in its message
	}{
		{"control: TagProcess, index 0 of 1", client.ManagerPath, client.ManagerInterface, "TagProcess", 1, tagArgs(0), client.NameInvalidArgs, "not a pidfd"},
		{"TagProcess, index 3 of 1", client.ManagerPath, client.ManagerInterface, "TagProcess", 1, tagArgs(3), client.NameInvalidArgs, "out of range"},
		{"TagProcess on no object", "/org/contid1/nope", client.ManagerInterface, "TagProcess", 1, tagArgs(0), client.NameInvalidArgs, "only"},
		{"Peer.Ping with a descriptor", client.ManagerPath, "org.freedesktop.DBus.Peer", "Ping", 1, []any{godbus.UnixFDIndex(0)}, client.NameInvalidArgs, "only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			time.Sleep(500 * time.Millisecond)
			before := nulls()
			for i := 0; i < 10; i++ {
				serial++
				msg := hostile.Message(serial, client.BusName, tc.path, tc.iface, tc.member, uint32(tc.fds), tc.body...)
				rights := make([]int, tc.fds)
				for j := range rights {
					rights[j] = null
				}
				if _, _, err := conn.WriteMsgUnix(msg, unix.UnixRights(rights...), nil); err != nil {
					t.Fatal(err)
				}
				reply, err := hostile.Await(rd, serial)
				if err != nil {
					t.Fatalf("call %d: no answer: %v", i, err)
				}
				name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
				text := fmt.Sprint(reply.Body...)
				if reply.Type != godbus.TypeError || name != tc.want || !strings.Contains(text, tc.text) {
					t.Fatalf("call %d: %v %s %q, want the error %s with %q", i, reply.Type, name, text, tc.want, tc.text)
				}
			}
			if after := nulls(); after > before {
				t.Fatalf("contidd holds %d descriptors of /dev/null after 10 calls, %d before", after, before)
			}
		})
	}
}
