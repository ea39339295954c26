package dbus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// contidctl monitor prints ContainerNew and ContainerRemoved as they come,
// on the bus and on the peer-to-peer socket, and exits 0 on SIGINT and
// SIGTERM.
func TestContidctlMonitor(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	c := e.busClient()
	tests := []struct {
		name string
		args []string
		stop syscall.Signal
	}{
		{"bus, text", []string{"monitor", "--address=" + e.busAddr}, syscall.SIGINT},
		{"bus, json", []string{"monitor", "--json=short", "--address=" + e.busAddr}, syscall.SIGTERM},
		{"p2p, json", []string{"--json=short", "monitor", "--p2p", e.sock}, syscall.SIGINT},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := ctlCommand(nil, tt.args...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			lines, errLines := readLines(stdout), readLines(stderr)
			// Subscribed once it says so: from here no signal is missed.
			waitLine(t, errLines, func(l string) bool { return strings.HasPrefix(l, "Monitoring") })

			cg := e.cgroup(fmt.Sprintf("watched%d", i))
			p := e.startIn(cg, nil, "sleep", "1000")
			id, err := c.TagCgroup(context.Background(), cg, 0, client.TagOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_ = p.Process.Kill()
			_ = p.Wait()
			for _, member := range []string{"ContainerNew", "ContainerRemoved"} {
				line := waitLine(t, lines, func(l string) bool { return strings.Contains(l, member) })
				checkSignalLine(t, line, member, id, strings.Contains(strings.Join(tt.args, " "), "--json"))
			}

			_ = cmd.Process.Signal(tt.stop)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("monitor after %v: %v", tt.stop, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("monitor did not exit within 10s of %v", tt.stop)
			}
		})
	}
}

// checkSignalLine checks one line of monitor's output for the signal.
func checkSignalLine(t *testing.T, line, member string, id contid.ID, isJSON bool) {
	t.Helper()
	if !isJSON {
		re := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \S+ ` + member +
			fmt.Sprintf(" id=%d object=%s$", id, regexp.QuoteMeta(string(client.ContainerPath(id)))))
		if !re.MatchString(line) {
			t.Fatalf("monitor printed %q, want %s", line, re)
		}
		return
	}
	var got struct {
		Timestamp int64  `json:"timestamp_usec"`
		Signal    string `json:"signal"`
		ID        uint64 `json:"id"`
		Object    string `json:"object"`
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("monitor printed %q: %v", line, err)
	}
	age := time.Since(time.UnixMicro(got.Timestamp))
	if got.Signal != member || got.ID != uint64(id) || got.Object != string(client.ContainerPath(id)) || age < 0 || age > time.Minute {
		t.Fatalf("monitor printed %q for %s of %d", line, member, id)
	}
}

func readLines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine returns the first line that matches, failing after 10s or
// when the output ends.
func waitLine(t *testing.T, lines <-chan string, match func(string) bool) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the output ended without the line; it had:\n%s", strings.Join(seen, "\n"))
			}
			if match(l) {
				return l
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no such line within 10s; seen:\n%s", strings.Join(seen, "\n"))
		}
	}
}

// The bus delivers a signal addressed to a connection whatever its match
// rules, so any peer can send a client a ContainerNew of its own making.
// WatchSignals passes on only contidd's. The control is the same
// connection's raw signal channel, which gets the forgery.
func TestWatchSignalsIgnoresForgedSignals(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	c := e.busClient()
	raw := make(chan *godbus.Signal, 16)
	c.Conn().Signal(raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs, err := c.WatchSignals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := godbus.Connect(e.busAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	const forgedID = uint64(987654)
	forged := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:        godbus.MakeVariant(client.ManagerPath),
		godbus.FieldInterface:   godbus.MakeVariant(client.ManagerInterface),
		godbus.FieldMember:      godbus.MakeVariant(client.SignalContainerNew),
		godbus.FieldDestination: godbus.MakeVariant(c.Conn().Names()[0]),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(forgedID, client.ContainerPath(contid.ID(forgedID)))),
	}, Body: []any{forgedID, client.ContainerPath(contid.ID(forgedID))}}
	if call := forger.Send(forged, nil); call.Err != nil {
		t.Fatal(call.Err)
	}

	// Control: the forgery reaches the connection.
	timeout := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case s := <-raw:
			got = s.Name == client.ManagerInterface+"."+client.SignalContainerNew && len(s.Body) == 2 && s.Body[0] == forgedID
		case <-timeout:
			t.Fatal("control failed: the forged signal did not reach the client at all")
		}
	}
	// Then contidd's own signal: it must be the first WatchSignals gives.
	cg := e.cgroup("real")
	e.startIn(cg, nil, "sleep", "1000")
	id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-sigs:
		if s.Member != client.SignalContainerNew || s.ID != id {
			t.Fatalf("WatchSignals passed on %+v; want contidd's ContainerNew of %d", s, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no ContainerNew of %d from WatchSignals within 10s", id)
	}
}
