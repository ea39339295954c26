package dbus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/hostile"
	"github.com/contid/contid/internal/testenv"
)

var root = &syscall.Credential{Uid: 0, Gid: 0}

// The attack of a user on a server that judged the caller by what its
// process is at request time: connect as nobody, send all of a TagCgroup
// but the last byte, let a child inherit the connection, exec a
// setuid-root program, and have the child send the last byte. contidd
// decides on the UID the kernel (or dbus-daemon) recorded at connect, so
// it is refused, on the socket and on the bus. The control runs the very
// same flow with a root connector, which is granted: what decides is the
// connector's UID, not the flow.
func TestSetuidExecAfterConnect(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	suid := setuidCopy(t)
	attacker := e.cgroup("attacker")
	tests := []struct {
		name   string
		bus    bool
		cred   *syscall.Credential
		expect string
	}{
		{"socket, nobody", false, nobody, "error " + client.NameAccessDenied},
		{"socket, root (control)", false, root, "granted"},
		{"bus, nobody", true, nobody, "error " + client.NameAccessDenied},
		{"bus, root (control)", true, root, "granted"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := e.sock
			if tt.bus {
				addr = busPath(e.busAddr)
			}
			victim := e.cgroup(fmt.Sprintf("victim%d", i))
			a := e.startPartial(partialCall{addr: addr, bus: tt.bus, target: victim, then: "exec:" + suid}, tt.cred, attacker)
			// The connector now runs the setuid program: euid 0, every
			// capability, the same PID and start time.
			waitExe(t, a.cmd.Process.Pid, suid, a.cmd)
			waitEUID(t, a.cmd.Process.Pid, 0)
			got := a.finish()
			if !strings.HasPrefix(got, tt.expect) {
				t.Fatalf("reply %q, want %s", got, tt.expect)
			}
		})
	}
}

// The connecting process exits, a child keeps its connection, and its PID
// is given to another process, one that would be granted what the
// connector is refused: root outside every container, where the connector
// was root inside container X (which does not allow nesting). contidd
// pins the connector (SO_PEERPIDFD, or pidfd_open at accept on kernels
// before 6.5, forced here by a build of contidd; on the bus, the time its
// connection appeared), so the request is refused. The controls: the same
// flow while the connector still runs is judged as the connector
// (NotDescendant), and the process that now has the PID, asking on its own
// connection, is granted.
func TestPIDReuseAfterConnect(t *testing.T) {
	e := newEnv(t, "")
	setpid := setpidProgram(t)
	variants := []struct {
		name   string
		binary string
		bus    bool
	}{
		{"socket, SO_PEERPIDFD", "", false},
		{"socket, pidfd_open at accept", contiddWithoutPeerPidfd(t), false},
		{"bus", "", true},
	}
	for vi, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			d := e.startWith(daemonOptions{binary: v.binary})
			defer d.kill()
			c := e.p2pClient()
			ctx := context.Background()
			if _, err := c.ListContainers(ctx); err != nil {
				t.Fatal(err)
			}
			// Said once, at the first connection pinned that way.
			if hasFallback := strings.Contains(d.logText(), "No SO_PEERPIDFD"); hasFallback != (v.binary != "") {
				t.Fatalf("contidd pinned peers by pidfd_open: %v, want %v\n%s", hasFallback, v.binary != "", d.logText())
			}
			inner := e.cgroup(fmt.Sprintf("v%d-inner", vi))
			if _, err := c.TagCgroup(ctx, inner, 0, client.TagOptions{}); err != nil {
				t.Fatal(err)
			}
			free := e.cgroup(fmt.Sprintf("v%d-free", vi))
			addr := e.sock
			if v.bus {
				addr = busPath(e.busAddr)
			}

			// Control: the connector, alive, is judged as itself.
			alive := e.startPartial(partialCall{addr: addr, bus: v.bus, target: e.cgroup(fmt.Sprintf("v%d-t1", vi)), then: "stay"}, root, inner)
			if got := alive.finish(); !strings.HasPrefix(got, "error "+client.NameNotDescendant) {
				t.Fatalf("connector alive: %q, want NotDescendant", got)
			}

			// The attack: the connector exits and its PID comes back.
			a := e.startPartial(partialCall{addr: addr, bus: v.bus, target: e.cgroup(fmt.Sprintf("v%d-t2", vi)), then: "exit"}, root, inner)
			pid := a.cmd.Process.Pid
			if err := <-a.exitErr; err != nil {
				t.Fatalf("connector: %v", err)
			}
			// Past the tick the connection appeared in, so a bus caller
			// is told from its successor by start time.
			time.Sleep(20 * time.Millisecond)
			reuse := e.startIn(free, nil, setpid, strconv.Itoa(pid), "/bin/sleep", "1000")
			sleepExe, _ := filepath.EvalSymlinks("/bin/sleep")
			waitExe(t, pid, sleepExe, reuse)
			got := a.finish()
			if !strings.HasPrefix(got, "error "+client.NameAccessDenied) {
				t.Fatalf("PID %d reused after connect: %q, want AccessDenied", pid, got)
			}
			// contidd's log arrives through a pipe, a moment later.
			said := false
			for i := 0; i < 50 && !said; i++ {
				said = strings.Contains(d.logText(), "has exited since it connected")
				time.Sleep(20 * time.Millisecond)
			}
			if !said {
				t.Fatalf("the refusal does not say why:\n%s", d.logText())
			}

			// Control: the process that has the PID now would be granted.
			own := e.startPartial(partialCall{addr: addr, bus: v.bus, target: e.cgroup(fmt.Sprintf("v%d-t3", vi)), then: "stay"}, root, free)
			if got := own.finish(); !strings.HasPrefix(got, "granted") {
				t.Fatalf("a root process outside containers: %q, want granted", got)
			}
		})
	}
}

// setpidProgram compiles testdata/setpid.c, which starts a program with a
// chosen PID (clone3 with set_tid): the only way to reuse a PID on demand.
func setpidProgram(t *testing.T) string {
	t.Helper()
	cc := ""
	for _, c := range []string{os.Getenv("CC"), "cc", "clang", "gcc"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		testenv.Missing(t, "skipped: no C compiler (`make deps` installs clang)")
	}
	out := filepath.Join(t.TempDir(), "setpid")
	if b, err := exec.Command(cc, "-O2", "-Wall", "-Werror", "-o", out, "testdata/setpid.c").CombinedOutput(); err != nil {
		t.Fatalf("compile setpid.c: %v\n%s", err, b)
	}
	return out
}

// waitExe waits until pid runs exe, started by setpid as cmd.
func waitExe(t *testing.T, pid int, exe string, cmd *exec.Cmd) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); got == exe {
			return
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s came up as PID %d", exe, pid)
}

// The root cgroup, init.scope, the slices and contidd's own cgroup with
// its ancestors are refused whoever asks, with a message that says why;
// a sibling of contidd's cgroup is the control. Nor does the kernel tag a
// slice created under an autotag parent, where a scope is tagged.
func TestNeverTaggable(t *testing.T) {
	e := newEnv(t, "")
	own := e.cgroup("daemon")
	auto := e.cgroup("auto")
	e.startWith(daemonOptions{cgroup: own}, "--autotag-parents", auto)
	ctx := context.Background()

	slice := e.cgroup("auto/machine-pods.slice")
	scope := e.cgroup("auto/machine-web.scope")
	c := e.p2pClient()
	waitListed(t, c, scope) // the control; the slice was made first
	inSlice := e.startIn(slice, nil, "sleep", "1000")
	for _, le := range mustList(t, c) {
		if le.Cgroup == slice {
			t.Fatalf("the slice %s was tagged at mkdir: %+v", slice, le)
		}
	}
	if _, err := c.GetContainerByPID(ctx, uint32(inSlice.Process.Pid)); !hasErrorName(err, client.NameNoSuchContainer) {
		t.Fatalf("a process in the slice: %v, want NoSuchContainer", err)
	}

	for tn, c := range map[string]*client.Client{"bus": e.busClient(), "p2p": e.p2pClient()} {
		tests := []struct {
			path, why string
		}{
			{"/", "root cgroup"},
			{"/init.scope", "PID 1"},
			{"/system.slice", "slice"},
			{"/machine.slice/machine-pods.slice", "slice"},
			{own, "contidd itself"},
			{e.cgBase, "contidd itself"},
		}
		for _, tt := range tests {
			t.Run(tn+tt.path, func(t *testing.T) {
				_, err := c.TagCgroup(ctx, tt.path, 0, client.TagOptions{})
				if !hasErrorName(err, client.NameInvalidArgs) || !strings.Contains(err.Error(), tt.why) {
					t.Fatalf("TagCgroup(%s) = %v, want InvalidArgs saying %q", tt.path, err, tt.why)
				}
			})
		}
		if _, err := c.TagCgroup(ctx, e.cgroup("sibling-"+tn), 0, client.TagOptions{}); err != nil {
			t.Fatalf("%s: a sibling of contidd's cgroup: %v", tn, err)
		}
	}
}

func mustList(t *testing.T, c *client.Client) []client.ListEntry {
	t.Helper()
	list, err := c.ListContainers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// Root inside a container is not root for the connection limits: it draws
// on its container's allowance, as a user does, so it cannot hold the
// connections the orchestrators outside every container need. The control
// is the same helper as root outside every container, which gets more.
func TestContainerRootConnectionAllowance(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	c := e.p2pClient()
	ctx := context.Background()
	tagged, untagged := e.cgroup("croot"), e.cgroup("hostroot")
	if _, err := c.TagCgroup(ctx, tagged, 0, client.TagOptions{}); err != nil {
		t.Fatal(err)
	}
	held := func(cg string) int {
		t.Helper()
		cmd := exec.Command(helperBinary(t))
		cmd.Env = append(os.Environ(), helperEnv+"=connections", "CONTID_TEST_ADDR="+e.sock, "CONTID_TEST_N=60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		defer placeIn(t, cmd, filepath.Join(e.cgRoot, cg), root)()
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		var n int
		if _, err := fmt.Fscan(out, &n); err != nil {
			t.Fatalf("connections helper in %s: %v", cg, err)
		}
		return n
	}
	inside := held(tagged)
	if inside > 32 {
		t.Fatalf("root in a container holds %d connections; a user's allowance is 32", inside)
	}
	outside := held(untagged)
	if outside != 60 {
		t.Fatalf("control: root outside every container got %d of 60 connections", outside)
	}
	t.Logf("root in a container: %d connections; root outside: %d", inside, outside)
}

// A message larger than contidd reads is refused from its header: it is
// never decoded, the caller gets LimitsExceeded, and the connection goes
// on. Root is held to it too. The control decodes the same message the way
// a server that reads it whole would, and measures what that costs.
func TestOversizeMessageNotDecoded(t *testing.T) {
	e := newEnv(t, "")
	d := e.start()
	msg := variantFlood(16<<20 - 64)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// A 2 MiB one, to keep the test's own memory small.
	if _, err := godbus.DecodeMessage(bytes.NewReader(variantFlood(2 << 20))); err != nil {
		t.Fatalf("control: decode: %v", err)
	}
	runtime.ReadMemStats(&after)
	decoded := (after.TotalAlloc - before.TotalAlloc) >> 20
	if decoded < 20*2 {
		t.Fatalf("control: decoding a 2 MiB message allocated only %d MiB; the attack would be no amplification", decoded)
	}

	_, hwm0, err := statusKB(d.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := hostile.Connect(e.sock, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	rd, err := hostile.Hello(conn)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		binary.LittleEndian.PutUint32(msg[8:12], uint32(10+i))
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		r, err := hostile.Await(rd, uint32(10+i))
		if err != nil {
			t.Fatal(err)
		}
		if name, _ := r.Headers[godbus.FieldErrorName].Value().(string); name != client.NameLimitsExceeded {
			t.Fatalf("reply %d to a 16 MiB call: %v, want %s", i, r.Headers[godbus.FieldErrorName], client.NameLimitsExceeded)
		}
	}
	ping := hostile.Message(20, client.BusName, "/org/contid1", "org.freedesktop.DBus.Peer", "Ping", 0)
	if _, err := conn.Write(ping); err != nil {
		t.Fatal(err)
	}
	if r, err := hostile.Await(rd, 20); err != nil || r.Type != godbus.TypeMethodReply {
		t.Fatalf("Ping after the refused calls: %v %v", r, err)
	}
	_, hwm1, err := statusKB(d.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if grew := (hwm1 - hwm0) >> 10; grew > 32 {
		t.Fatalf("contidd's peak RSS grew by %d MiB over three 16 MiB calls (decoding 2 MiB allocates %d MiB)", grew, decoded)
	}
	t.Logf("control: decoding a 2 MiB message allocates %d MiB; contidd's peak RSS grew by %d KiB over three of 16 MiB", decoded, hwm1-hwm0)
}

// variantFlood is a ListContainers call of about size bytes whose body is
// an array of one-byte variants, 4 bytes each on the wire, each of which
// godbus decodes into a Go value many times that size.
func variantFlood(size int) []byte {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldDestination: godbus.MakeVariant(client.BusName),
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
		godbus.FieldInterface:   godbus.MakeVariant(client.ManagerInterface),
		godbus.FieldMember:      godbus.MakeVariant("ListContainers"),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.ParseSignatureMust("av")),
	}, Body: []any{[]godbus.Variant{}}}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	header := 16 + (int(binary.LittleEndian.Uint32(b[12:16]))+7)&^7
	elem := []byte{1, 'y', 0, 7}
	n := (size - header - 4) / len(elem)
	body := make([]byte, 4, 4+n*len(elem))
	binary.LittleEndian.PutUint32(body, uint32(n*len(elem)))
	for i := 0; i < n; i++ {
		body = append(body, elem...)
	}
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(body)))
	return append(append([]byte{}, b[:header]...), body...)
}

// Without SO_PEERPIDFD (Linux before 6.5) contidd opens the connector's
// PID at accept. Root in a container connects while contidd is not
// accepting (stopped here; in life restarting behind its socket unit),
// pipelines a TagCgroup of a cgroup outside its container, hands the
// connection to a child and exits, and an untagged process takes its
// PID. contidd must not take that process for the connector: it holds no
// end of the connection, so the request is refused. The control is the
// same build without that check, which grants the tag.
func TestPIDReuseBeforeAccept(t *testing.T) {
	e := newEnv(t, "")
	setpid := setpidProgram(t)
	sleepExe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, binary string
		granted      bool
	}{
		{"fallback", contiddWithoutPeerPidfd(t), false},
		{"control: fallback without the check", contiddUnconfirmed(t), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := e.startWith(daemonOptions{binary: tt.binary})
			defer d.kill()
			orch := e.p2pClient()
			ctx := context.Background()
			n := strconv.Itoa(len(tt.binary)) + strconv.FormatBool(tt.granted)
			inner := e.cgroup("aw-inner-" + n)
			if _, err := orch.TagCgroup(ctx, inner, 0, client.TagOptions{}); err != nil {
				t.Fatal(err)
			}
			victim := e.cgroup("aw-victim-" + n)
			if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			resumed := false
			defer func() {
				if !resumed {
					_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGCONT)
				}
			}()
			conn := exec.Command(helperBinary(t))
			conn.Env = append(os.Environ(), helperEnv+"=connector", "CONTID_TEST_ADDR="+e.sock, "CONTID_TEST_TARGET="+victim)
			release := placeIn(t, conn, filepath.Join(e.cgRoot, inner), root)
			// Not StdoutPipe: Wait would close it, and the holder, which
			// outlives the connector, writes the reply there.
			out, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			conn.Stdout = w
			err = conn.Start()
			w.Close()
			release()
			if err != nil {
				t.Fatal(err)
			}
			rd := bufio.NewReader(out)
			line, _ := rd.ReadString('\n')
			var holder int
			if _, err := fmt.Sscanf(line, "ready %d", &holder); err != nil {
				t.Fatalf("connector said %q", line)
			}
			t.Cleanup(func() { _ = syscall.Kill(holder, syscall.SIGKILL) })
			pid := conn.Process.Pid
			if err := conn.Wait(); err != nil {
				t.Fatalf("connector: %v", err)
			}
			reuse := e.startIn(e.cgroup("aw-free-"+n), nil, setpid, strconv.Itoa(pid), sleepExe, "1000")
			waitExe(t, pid, sleepExe, reuse)
			resumed = true
			if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			reply, _ := rd.ReadString('\n')
			reply = strings.TrimSpace(reply)
			if got := strings.HasPrefix(reply, "granted"); got != tt.granted {
				t.Fatalf("the request of a container's root whose PID went to an untagged process before accept: %q (granted %v, want %v)", reply, got, tt.granted)
			}
			t.Logf("PID %d reused before accept: %s", pid, reply)
		})
	}
}

// godbus decodes a message whole before any handler sees it, and decoding
// multiplies a body's size. On the system bus any local user can send
// contidd a call or a unicast signal of up to dbus-daemon's 32 MiB. The
// relay skips those over maxMessageSize from their fixed header: the
// call is answered with LimitsExceeded, the signal is dropped, and
// contidd's memory does not move. The control, the build that reads the
// bus with godbus directly, decodes both, and its peak memory grows by
// many times the bytes sent. The relay does not look at who sends, so
// the sender here is root.
func TestBusOversizeSkipped(t *testing.T) {
	e := newEnv(t, "")
	const size = 8 << 20
	vs := make([]godbus.Variant, size/4) // a one-byte variant is 4 bytes on the wire
	for i := range vs {
		vs[i] = godbus.MakeVariant(byte(7))
	}
	for _, tt := range relayBuilds(t) {
		t.Run(tt.name, func(t *testing.T) {
			d, conn, owner := startForBus(t, e, tt.binary)
			pid := d.cmd.Process.Pid
			_, before, err := statusKB(pid)
			if err != nil {
				t.Fatal(err)
			}
			// A unicast signal reaches its destination whatever it
			// subscribed to.
			signal := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldPath:        godbus.MakeVariant(client.ManagerPath),
				godbus.FieldInterface:   godbus.MakeVariant("org.contid1.Flood"),
				godbus.FieldMember:      godbus.MakeVariant("Flood"),
				godbus.FieldDestination: godbus.MakeVariant(owner),
				godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(vs)),
			}, Body: []any{vs}}
			if call := conn.Send(signal, nil); call.Err != nil {
				t.Fatal(call.Err)
			}
			// Messages from one sender arrive in order, so the call's
			// answer comes after the signal was read.
			call := conn.Object(client.BusName, client.ManagerPath).Call(client.ManagerInterface+".ListContainers", 0, vs)
			_, after, err := statusKB(pid)
			if err != nil {
				t.Fatal(err)
			}
			growthMiB := (after - before) / 1024
			t.Logf("%d MiB call and signal: answer %v; contidd's peak memory grew by %d MiB", size>>20, call.Err, growthMiB)
			if limited := hasErrorName(call.Err, client.NameLimitsExceeded); limited != tt.relayed {
				t.Errorf("answer %v; want LimitsExceeded: %v", call.Err, tt.relayed)
			}
			if !raceBuild {
				if tt.relayed && growthMiB > 16 {
					t.Errorf("peak memory grew by %d MiB through the relay", growthMiB)
				}
				if !tt.relayed && growthMiB < 2*size>>20 {
					t.Errorf("control: peak memory grew by %d MiB only; the attack did not amplify", growthMiB)
				}
			}
			if _, err := e.busClient().ListContainers(context.Background()); err != nil {
				t.Errorf("a plain call after the large ones: %v", err)
			}
		})
	}
}

// What may reach godbus from the bus is screened by the relay. A signal
// sent to contidd by name, which reaches it whatever it subscribed to,
// is dropped: with descriptors, godbus would keep them open for good, and
// with an array of descriptors, godbus v5.2.4 panics in its reader and
// takes contidd down. A call is answered even when its size is in its
// header fields rather than its body. The control, the build that reads
// the bus with godbus directly, leaks a descriptor per signal and then
// crashes. The relay does not look at who sends, so the sender is root,
// whose bus policy allows one descriptor per message.
func TestBusScreening(t *testing.T) {
	e := newEnv(t, "")
	for _, tt := range relayBuilds(t) {
		t.Run(tt.name, func(t *testing.T) {
			d, conn, owner := startForBus(t, e, tt.binary)
			pid := d.cmd.Process.Pid
			null, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			signal := func(body ...any) *godbus.Message {
				return &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
					godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/machine1")),
					godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.machine1.Manager"),
					godbus.FieldMember:      godbus.MakeVariant("MachineNew"),
					godbus.FieldDestination: godbus.MakeVariant(owner),
					godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(body...)),
				}, Body: body}
			}
			ping := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return conn.Object(client.BusName, client.ManagerPath).CallWithContext(ctx, "org.freedesktop.DBus.Peer.Ping", 0).Err
			}
			before := fdCount(t, pid)
			const signals = 200
			fd := godbus.UnixFD(null.Fd())
			for i := 0; i < signals; i++ {
				if call := conn.Send(signal("web", godbus.ObjectPath("/x"), fd), nil); call.Err != nil {
					t.Fatal(call.Err)
				}
			}
			// Messages from one sender arrive in order: once the ping is
			// answered, every signal has been read.
			if err := ping(); err != nil {
				t.Fatalf("ping after the signals: %v", err)
			}
			grew := fdCount(t, pid) - before
			t.Logf("%d signals with a descriptor each: contidd holds %d more descriptors", signals, grew)
			if tt.relayed && grew > 10 {
				t.Errorf("contidd kept %d descriptors", grew)
			}
			if !tt.relayed && grew < signals*3/4 {
				t.Errorf("control: contidd kept only %d descriptors; the attack did not leak", grew)
			}

			if call := conn.Send(signal([]godbus.UnixFD{fd}), nil); call.Err != nil {
				t.Fatal(call.Err)
			}
			err = ping()
			t.Logf("a signal with an array of descriptors: ping after it: %v; contidd alive: %v", err, d.alive())
			if tt.relayed != (err == nil && d.alive()) {
				t.Errorf("ping %v, contidd alive %v; want both fine: %v", err, d.alive(), tt.relayed)
			}
			if !tt.relayed {
				return
			}

			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			long := godbus.ObjectPath("/" + strings.Repeat("a", 70<<10))
			err = conn.Object(client.BusName, long).CallWithContext(ctx, client.ManagerInterface+".ListContainers", 0).Err
			if !hasErrorName(err, client.NameLimitsExceeded) {
				t.Errorf("a call of 70 KiB of header fields: %v; want LimitsExceeded", err)
			}
		})
	}
}

// startForBus starts a contidd build and connects to the bus as root,
// with contidd's unique name there: what a message sent to contidd by
// name needs.
func startForBus(t *testing.T, e *env, binary string) (*daemon, *godbus.Conn, string) {
	t.Helper()
	d := e.startWith(daemonOptions{binary: binary})
	t.Cleanup(d.kill)
	conn, err := godbus.Connect(e.busAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var owner string
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, client.BusName).Store(&owner); err != nil {
		t.Fatal(err)
	}
	return d, conn, owner
}

// relayBuild is a build of contidd with the bus relay, or its control
// without.
type relayBuild struct {
	name, binary string
	relayed      bool
}

func relayBuilds(t *testing.T) []relayBuild {
	return []relayBuild{
		{"relay", contiddBinary(t), true},
		{"control: no relay", contiddUnrelayed(t), false},
	}
}

// A descriptor can hide in a variant, where the signature does not show
// it: a call of signature hv whose variant holds an array of the call's
// own descriptor. godbus v5.2.4 panics decoding it with the descriptors
// at hand, before any handler runs. The relay decodes such a call without
// descriptors first and refuses it; the control, without the relay,
// crashes. The bus policy lets only root send contidd descriptors.
func TestBusVariantDescriptor(t *testing.T) {
	e := newEnv(t, "")
	for _, tt := range relayBuilds(t) {
		t.Run(tt.name, func(t *testing.T) {
			d, conn, _ := startForBus(t, e, tt.binary)
			null, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			fd := godbus.UnixFD(null.Fd())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The variant's array names descriptor 0, the call's one
			// descriptor, so the call carries one, as the policy allows.
			err = conn.Object(client.BusName, client.ManagerPath).CallWithContext(ctx, client.ManagerInterface+".TagProcess", 0, fd, godbus.MakeVariant([]godbus.UnixFDIndex{0})).Err
			alive := d.alive() && conn.Object(client.BusName, client.ManagerPath).CallWithContext(ctx, "org.freedesktop.DBus.Peer.Ping", 0).Err == nil
			t.Logf("call hv with an array of descriptors in the variant: %v; contidd serves after it: %v", err, alive)
			if tt.relayed && (!hasErrorName(err, client.NameInvalidArgs) || !alive) {
				t.Errorf("answer %v, serving %v; want InvalidArgs and serving", err, alive)
			}
			if !tt.relayed && alive {
				t.Errorf("control: contidd survived; the attack did not crash it")
			}
		})
	}
}
