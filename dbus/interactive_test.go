package dbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// polkitPolicy lets root own polkit's name on the test's bus, where the
// stand-in below takes it.
const polkitPolicy = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="org.freedesktop.PolicyKit1"/>
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
</busconfig>`

// polkitCheck is one CheckAuthorization call the stand-in received.
type polkitCheck struct {
	kind, action string
	flags        uint32
}

// fakePolkit answers CheckAuthorization as polkit does for an action
// that needs the user to authenticate: without AllowUserInteraction,
// "not authorized, but a challenge would do"; with it, "authorized" once
// the (pretended) user has finished typing: the test sends on release.
type fakePolkit struct {
	asked   chan polkitCheck
	release chan struct{}
}

type polkitSubject struct {
	Kind    string
	Details map[string]godbus.Variant
}

type polkitResult struct {
	Authorized, Challenge bool
	Details               map[string]string
}

func (p *fakePolkit) CheckAuthorization(s polkitSubject, action string, _ map[string]string, flags uint32, _ string) (polkitResult, *godbus.Error) {
	p.asked <- polkitCheck{s.Kind, action, flags}
	if flags&1 == 0 {
		return polkitResult{Challenge: true, Details: map[string]string{}}, nil
	}
	<-p.release
	return polkitResult{Authorized: true, Details: map[string]string{}}, nil
}

// tagAsNobody is the test binary, as user nobody, calling TagCgroup of
// target through the client package, with or without the flag
// (helperTagger). The caller starts it.
func tagAsNobody(addr string, bus bool, target string, interactive bool) *exec.Cmd {
	cmd := exec.Command(helperPath)
	cmd.Env = append(os.Environ(), helperEnv+"=tagger", "CONTID_TEST_ADDR="+addr, "CONTID_TEST_TARGET="+target,
		"CONTID_TEST_BUS="+strconv.FormatBool(bus), "CONTID_TEST_INTERACTIVE="+strconv.FormatBool(interactive))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// helperTagger: see tagAsNobody. It prints "granted ID" or
// "error NAME: TEXT".
func helperTagger() error {
	var c *client.Client
	var err error
	if os.Getenv("CONTID_TEST_BUS") == "true" {
		c, err = client.ConnectBus(os.Getenv("CONTID_TEST_ADDR"))
	} else {
		c, err = client.ConnectP2P(os.Getenv("CONTID_TEST_ADDR"))
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.AllowInteractiveAuthorization(os.Getenv("CONTID_TEST_INTERACTIVE") == "true")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.TagCgroup(ctx, os.Getenv("CONTID_TEST_TARGET"), 0, client.TagOptions{})
	var re *client.RemoteError
	switch {
	case errors.As(err, &re):
		fmt.Printf("error %s: %s\n", re.Name, re.Message)
	case err != nil:
		return err
	default:
		fmt.Printf("granted %d\n", id)
	}
	return nil
}

func startFakePolkit(t *testing.T, busAddr string) *fakePolkit {
	t.Helper()
	conn, err := godbus.Connect(busAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &fakePolkit{asked: make(chan polkitCheck, 16), release: make(chan struct{})}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(p.release) }) })
	if err := conn.Export(p, "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1.Authority"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.freedesktop.PolicyKit1", godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.PolicyKit1 on the test bus: %v (reply %v)", err, reply)
	}
	return p
}

// A caller that is not root gets polkit's password prompt only when its
// call carries ALLOW_INTERACTIVE_AUTHORIZATION; without the flag it is
// refused with "Interactive authentication required." (the control:
// the same user and target, where the same polkit would have asked).
// While one such call waits for the user, on either transport, contidd
// answers everyone else: root tags and lists, and another call of the
// same user is answered at once. Once the user has answered, the
// waiting tag is granted.
func TestInteractiveAuthorization(t *testing.T) {
	e := newEnv(t, "", polkitPolicy)
	pk := startFakePolkit(t, e.busAddr)
	e.start()
	helperBinary(t)
	root := e.p2pClient()
	ctx := context.Background()
	for _, tc := range []struct {
		name, addr, subject string
		bus                 bool
	}{
		{"bus", e.busAddr, "system-bus-name", true},
		{"p2p", e.sock, "unix-process", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := e.cgroup("asked-" + tc.name)

			out, err := tagAsNobody(tc.addr, tc.bus, target, false).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "error "+client.NameAccessDenied) || !strings.Contains(string(out), client.InteractiveAuthRequired) {
				t.Errorf("without the flag: want %s with %q, got %v: %s", client.NameAccessDenied, client.InteractiveAuthRequired, err, out)
			}
			if got := <-pk.asked; got.flags != 0 || got.kind != tc.subject || got.action != client.PolkitActionTag {
				t.Errorf("without the flag polkit was asked %+v, want flags 0 for a %s", got, tc.subject)
			}

			waiting := tagAsNobody(tc.addr, tc.bus, target, true)
			var wout strings.Builder
			waiting.Stdout, waiting.Stderr = &wout, &wout
			if err := waiting.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- waiting.Wait() }()
			select {
			case got := <-pk.asked:
				if got.flags != 1 || got.kind != tc.subject {
					t.Errorf("with the flag polkit was asked %+v, want flags 1 (AllowUserInteraction) for a %s", got, tc.subject)
				}
			case err := <-done:
				t.Fatalf("the interactive call ended before polkit was asked: %v: %s", err, wout.String())
			case <-time.After(10 * time.Second):
				t.Fatal("polkit was not asked within 10s")
			}

			// Everyone else is answered meanwhile.
			for i, f := range []func(context.Context) error{
				func(ctx context.Context) error {
					_, err := root.TagCgroup(ctx, e.cgroup("meanwhile-"+tc.name), 0, client.TagOptions{})
					return err
				},
				func(ctx context.Context) error { _, err := root.ListContainers(ctx); return err },
			} {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := f(cctx); err != nil {
					t.Errorf("root's call %d while the user was being asked: %v", i, err)
				}
				cancel()
			}
			out, err = tagAsNobody(tc.addr, tc.bus, target, false).CombinedOutput()
			if err != nil || !strings.Contains(string(out), client.InteractiveAuthRequired) {
				t.Errorf("the same user's second call while the first waited: want %q, got %v: %s", client.InteractiveAuthRequired, err, out)
			}
			<-pk.asked
			select {
			case err := <-done:
				t.Fatalf("the interactive call ended before the user answered: %v: %s", err, wout.String())
			default:
			}

			// The user answers.
			select {
			case pk.release <- struct{}{}:
			case <-time.After(5 * time.Second):
				t.Fatal("the check that waited for the user is gone")
			}
			select {
			case err := <-done:
				if err != nil || !strings.HasPrefix(wout.String(), "granted ") {
					t.Errorf("after the user answered: %v: %s", err, wout.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the interactive call was not answered within 10s of the user's answer")
			}
		})
	}
}
