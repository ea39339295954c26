// Package hostile is a client of contidd's peer-to-peer socket that
// misbehaves on purpose, in each of the ways the server must withstand
// (docs/THREAT-MODEL.md, "D-Bus callers"): it stops reading, sends half a
// huge message, floods descriptors, or sits idle. The dbus tests and
// `make bench` run it as unprivileged users; nothing else uses it.
package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// Kind is one way to misbehave.
type Kind string

const (
	// NonReader says Hello, then sends Pings and never reads a reply.
	NonReader Kind = "non-reader"
	// HalfSent announces a 16 MiB message, sends half of it, and stalls.
	HalfSent Kind = "half-sent"
	// FDFlood sends Pings that carry descriptors their header does not
	// announce: a few (which the server must close), or more than it lets
	// through at all.
	FDFlood Kind = "fd-flood"
	// Idle authenticates, says Hello, and then neither reads nor writes.
	Idle Kind = "idle"
)

// Kinds lists every way, in a fixed order.
var Kinds = []Kind{NonReader, HalfSent, FDFlood, Idle}

// Pace keeps the attack about holding what the server has, not about
// burning the machine's CPU, which no server design can refuse a local
// user (the server's rate limits bound what it spends per user): a
// connection that was cut or refused waits this long before it connects
// again, and a descriptor flooder sends one message per FloodInterval.
// Non-readers pipeline as fast as the socket takes it.
const (
	Reconnect     = time.Second
	FloodInterval = 100 * time.Millisecond
	halfMessage   = 16 << 20
)

// Stats is what the connections of one kind saw.
type Stats struct {
	Kind Kind `json:"kind"`
	// Attempts counts connections opened; Refused those closed before
	// authentication finished (over the user's allowance); Admitted those
	// authenticated; Cut those the server closed while they misbehaved.
	Attempts int `json:"attempts"`
	Refused  int `json:"refused"`
	Admitted int `json:"admitted"`
	Cut      int `json:"cut"`
	// MaxCutAfterMS: for half-sent messages, the longest a started
	// message was kept before the server closed the connection.
	MaxCutAfterMS int64 `json:"max_cut_after_ms"`
}

// Attack runs n connections of kind k against the socket at sock until
// ctx ends; each connects again once the server has cut it.
func Attack(ctx context.Context, sock string, k Kind, n int) Stats {
	st := Stats{Kind: k}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r := once(ctx, sock, k)
				mu.Lock()
				st.Attempts++
				switch {
				case r.refused:
					st.Refused++
				default:
					st.Admitted++
					if r.cut {
						st.Cut++
					}
					if ms := r.cutAfter.Milliseconds(); ms > st.MaxCutAfterMS {
						st.MaxCutAfterMS = ms
					}
				}
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(Reconnect):
				}
			}
		}()
	}
	wg.Wait()
	return st
}

// AttackAll runs n connections of every kind at once until ctx ends and
// returns what each kind saw.
func AttackAll(ctx context.Context, sock string, n int) []Stats {
	out := make([]Stats, len(Kinds))
	var wg sync.WaitGroup
	for i, k := range Kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = Attack(ctx, sock, k, n)
		}()
	}
	wg.Wait()
	return out
}

type outcome struct {
	refused, cut bool
	cutAfter     time.Duration
}

func once(ctx context.Context, sock string, k Kind) outcome {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return outcome{refused: true}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := authenticate(c, k == FDFlood); err != nil {
		return outcome{refused: true}
	}
	if _, err := c.Write(call(1, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", 0)); err != nil {
		return outcome{cut: ctx.Err() == nil}
	}
	switch k {
	case NonReader:
		for serial := uint32(2); ctx.Err() == nil; serial++ {
			if _, err := c.Write(call(serial, "org.contid1", "/org/contid1", "org.freedesktop.DBus.Peer", "Ping", 0)); err != nil {
				break
			}
		}
	case HalfSent:
		start := time.Now()
		_, err := c.Write(halfOfHugeMessage())
		if err == nil {
			waitClosed(c)
		}
		if ctx.Err() == nil {
			return outcome{cut: true, cutAfter: time.Since(start)}
		}
	case FDFlood:
		go drain(c)
		null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return outcome{}
		}
		defer unix.Close(null)
		for serial := uint32(2); ctx.Err() == nil; serial++ {
			// Mostly a few, unannounced; every eighth message far more
			// than one message may bring.
			n := 4
			if serial%8 == 0 {
				n = 64
			}
			fds := make([]int, n)
			for i := range fds {
				fds[i] = null
			}
			if _, _, err := c.WriteMsgUnix(call(serial, "org.contid1", "/org/contid1", "org.freedesktop.DBus.Peer", "Ping", 0), unix.UnixRights(fds...), nil); err != nil {
				break
			}
			time.Sleep(FloodInterval)
		}
	case Idle:
		waitClosed(c)
	}
	return outcome{cut: ctx.Err() == nil}
}

// authenticate does the EXTERNAL exchange, optionally agreeing on
// descriptor passing, and reads the server's answers.
func authenticate(c *net.UnixConn, fds bool) error {
	_ = c.SetDeadline(time.Now().Add(40 * time.Second))
	defer c.SetDeadline(time.Time{})
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	req := "\x00AUTH EXTERNAL " + uid + "\r\n"
	if fds {
		req += "NEGOTIATE_UNIX_FD\r\n"
	}
	req += "BEGIN\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	// Byte by byte, so nothing after the last line is taken from the
	// stream the later reads see.
	r := bufio.NewReaderSize(oneByte{c}, 16)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK ") {
		return fmt.Errorf("authentication: %q, %v", line, err)
	}
	if fds {
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "AGREE_UNIX_FD") {
			return fmt.Errorf("descriptor passing: %q, %v", line, err)
		}
	}
	return nil
}

type oneByte struct{ c *net.UnixConn }

func (o oneByte) Read(p []byte) (int, error) { return o.c.Read(p[:min(1, len(p))]) }

// waitClosed returns when the server closes the connection, without
// reading anything it sent (a peer that does not read).
func waitClosed(c *net.UnixConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	for {
		closed := false
		_ = raw.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if n, _ := unix.Poll(pfd, 200); n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				closed = true
			}
		})
		if closed || errors.Is(raw.Control(func(uintptr) {}), net.ErrClosed) {
			return
		}
	}
}

func drain(c *net.UnixConn) {
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// Message encodes a method call, little-endian, with a serial; its header
// announces unixFDs descriptors (which the caller sends along, or not).
func Message(serial uint32, dest string, path godbus.ObjectPath, iface, member string, unixFDs uint32, body ...any) []byte {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldDestination: godbus.MakeVariant(dest),
		godbus.FieldPath:        godbus.MakeVariant(path),
		godbus.FieldInterface:   godbus.MakeVariant(iface),
		godbus.FieldMember:      godbus.MakeVariant(member),
	}, Body: body}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	if unixFDs > 0 {
		msg.Headers[godbus.FieldUnixFDs] = godbus.MakeVariant(unixFDs)
	}
	var buf bytes.Buffer
	if _, err := msg.EncodeToWithFDs(&buf, binary.LittleEndian); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:12], serial)
	return b
}

func call(serial uint32, dest string, path godbus.ObjectPath, iface, member string, _ godbus.Flags) []byte {
	return Message(serial, dest, path, iface, member, 0)
}

// Connect opens the socket at path and authenticates with EXTERNAL as the
// caller's UID, agreeing on descriptor passing if fds is set. It does not
// say Hello.
func Connect(path string, fds bool) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := authenticate(c, fds); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Hello says Hello on a connection Connect opened and waits for the reply;
// later replies are read from the reader it returns.
func Hello(c *net.UnixConn) (*bufio.Reader, error) {
	rd := bufio.NewReader(c)
	if _, err := c.Write(Message(1, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", 0)); err != nil {
		return nil, err
	}
	if _, err := Await(rd, 1); err != nil {
		return nil, fmt.Errorf("Hello: %w", err)
	}
	return rd, nil
}

// Await reads messages from r until the reply (or error) to serial, and
// returns it; signals and other replies on the way are skipped.
func Await(r io.Reader, serial uint32) (*godbus.Message, error) {
	for {
		msg, err := godbus.DecodeMessage(r)
		if err != nil {
			return nil, err
		}
		if msg.Type != godbus.TypeMethodReply && msg.Type != godbus.TypeError {
			continue
		}
		if rs, _ := msg.Headers[godbus.FieldReplySerial].Value().(uint32); rs == serial {
			return msg, nil
		}
	}
}

// halfOfHugeMessage is the first half of a call whose header announces a
// 16 MiB body (an array of bytes), as the D-Bus limits allow.
func halfOfHugeMessage() []byte {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldDestination: godbus.MakeVariant("org.contid1"),
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
		godbus.FieldInterface:   godbus.MakeVariant("org.contid1.Manager"),
		godbus.FieldMember:      godbus.MakeVariant("ListContainers"),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf([]byte{})),
	}, Body: []any{[]byte{}}}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	fields := int(binary.LittleEndian.Uint32(b[12:16]))
	header := 16 + (fields+7)&^7
	body := halfMessage - header
	binary.LittleEndian.PutUint32(b[4:8], uint32(body))
	binary.LittleEndian.PutUint32(b[8:12], 2)
	out := make([]byte, header+body/2)
	copy(out, b[:header])
	// The array's length, then zeros.
	binary.LittleEndian.PutUint32(out[header:], uint32(body-4))
	return out
}
