package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// seenCall is what the fake server read of one method call.
type seenCall struct {
	member string
	flags  godbus.Flags
}

// fakeServer answers one peer-to-peer connection as far as a client
// needs: the SASL exchange, Hello, and every other call with the
// AccessDenied error text, or with nothing when text is empty. It reports
// each call it read.
func fakeServer(t *testing.T, text string) (string, <-chan seenCall) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bus")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan seenCall, 16)
	go func() {
		defer close(seen)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		if _, err := r.ReadByte(); err != nil { // the credentials byte
			return
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.Fields(line); {
			case len(cmd) == 0:
				return
			case cmd[0] == "AUTH" && len(cmd) == 1:
				_, err = conn.Write([]byte("REJECTED EXTERNAL\r\n"))
			case cmd[0] == "AUTH" || cmd[0] == "DATA":
				_, err = conn.Write([]byte("OK 0123456789abcdef0123456789abcdef\r\n"))
			case cmd[0] == "NEGOTIATE_UNIX_FD":
				_, err = conn.Write([]byte("AGREE_UNIX_FD\r\n"))
			case cmd[0] == "BEGIN":
				goto messages
			default:
				_, err = conn.Write([]byte("ERROR\r\n"))
			}
			if err != nil {
				return
			}
		}
	messages:
		for serial := uint32(1); ; serial++ {
			msg, err := godbus.DecodeMessage(r)
			if err != nil {
				return
			}
			member, _ := msg.Headers[godbus.FieldMember].Value().(string)
			seen <- seenCall{member, msg.Flags}
			reply := &godbus.Message{Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldReplySerial: godbus.MakeVariant(msg.Serial()),
			}}
			if member == "Hello" {
				reply.Type = godbus.TypeMethodReply
				reply.Body = []any{":1.1"}
			} else if text == "" {
				continue // a stalled contidd: it reads the call, never answers
			} else {
				reply.Type = godbus.TypeError
				reply.Headers[godbus.FieldErrorName] = godbus.MakeVariant(NameAccessDenied)
				reply.Body = []any{text}
			}
			reply.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(reply.Body...))
			var b bytes.Buffer
			if err := reply.EncodeTo(&b, binary.LittleEndian); err != nil {
				return
			}
			// godbus leaves the serial to its connection: set it here.
			binary.LittleEndian.PutUint32(b.Bytes()[8:12], serial)
			if _, err := conn.Write(b.Bytes()); err != nil {
				return
			}
		}
	}()
	return path, seen
}

// The flag is on the wire exactly when asked for, and the refusal that
// asks for interactive authentication is told apart from any other.
func TestAllowInteractiveAuthorizationOnTheWire(t *testing.T) {
	plain := "access denied: tagging needs UID 0 or polkit authorization for org.contid1.tag"
	challenge := "access denied: " + InteractiveAuthRequired + " polkit grants org.contid1.tag after authentication"
	for _, tc := range []struct {
		name        string
		allow       []bool // AllowInteractiveAuthorization calls, in order
		text        string
		flag, needs bool
	}{
		{"never set", nil, plain, false, false},
		{"set", []bool{true}, challenge, true, true},
		{"set, then cleared", []bool{true, false}, challenge, false, true},
		{"set twice", []bool{true, true}, plain, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, seen := fakeServer(t, tc.text)
			c, err := ConnectP2P(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if h := <-seen; h.member != "Hello" || h.flags&godbus.FlagAllowInteractiveAuthorization != 0 {
				t.Errorf("Hello: %+v", h)
			}
			for _, a := range tc.allow {
				c.AllowInteractiveAuthorization(a)
			}
			_, err = c.TagCgroup(context.Background(), "/machine.slice/x.scope", 0, TagOptions{})
			call := <-seen
			if call.member != "TagCgroup" {
				t.Fatalf("server read %q, want TagCgroup", call.member)
			}
			if got := call.flags&godbus.FlagAllowInteractiveAuthorization != 0; got != tc.flag {
				t.Errorf("ALLOW_INTERACTIVE_AUTHORIZATION on the wire: %v, want %v (flags %#x)", got, tc.flag, call.flags)
			}
			if !IsRemote(err, NameAccessDenied) {
				t.Fatalf("TagCgroup error %v, want %s", err, NameAccessDenied)
			}
			if got := NeedsInteractiveAuth(err); got != tc.needs {
				t.Errorf("NeedsInteractiveAuth(%q) = %v, want %v", err, got, tc.needs)
			}
		})
	}
}

// A contidd that never answers fails each kind of call once its deadline
// passes, instead of holding the caller forever.
func TestCallTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(context.Context, *Client) error
	}{
		{"TagCgroup", func(ctx context.Context, c *Client) error {
			_, err := c.TagCgroup(ctx, "/machine.slice/x.scope", 0, TagOptions{})
			return err
		}},
		{"Manager properties", func(ctx context.Context, c *Client) error {
			_, err := c.Manager(ctx)
			return err
		}},
		{"ListProcesses", func(ctx context.Context, c *Client) error {
			_, err := c.ListProcesses(ctx, 1)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, seen := fakeServer(t, "")
			c, err := ConnectP2P(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			<-seen // Hello
			c.SetCallTimeout(100 * time.Millisecond)
			if err := tc.call(context.Background(), c); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want the call's deadline", err)
			}
			if call := <-seen; call.member == "Hello" {
				t.Fatalf("the server never read the call")
			}
		})
	}
}
