// Package p2p is contidd's peer-to-peer D-Bus server, the socket at
// /run/contid/bus: it authenticates peers (SASL EXTERNAL against
// SO_PEERCRED), pins the connecting process, frames and decodes messages
// within the limits that keep peers from exhausting contidd, answers what
// a client expects of a bus itself (org.freedesktop.DBus, Peer), and queues
// replies and signals to each peer. It decides nothing about contid's
// objects or who may tag: every other call goes to the Dispatcher, with
// the Origin the server established for the connection.
//
// godbus has no server-side authentication, so the protocol is spoken
// here, reusing godbus's message codec.
package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
)

const serverUniqueName = ":1.0"

// Interfaces of the D-Bus specification the server answers itself.
const (
	ifaceBus  = "org.freedesktop.DBus"
	ifacePeer = "org.freedesktop.DBus.Peer"
)

// Log priorities, as syslog numbers them, for the Logf a Server is given.
const (
	prioErr    = 3
	prioNotice = 5
	prioInfo   = 6
	prioDebug  = 7
)

// Dispatcher is the service behind the socket.
type Dispatcher interface {
	// Dispatch answers a method call for contid's objects, from the
	// process o names, and returns the reply body or the D-Bus error. It
	// runs on a goroutine of its own per call; o.Pidfd stays open until
	// it returns.
	Dispatch(o Origin, msg *godbus.Message) ([]any, *godbus.Error)
	// Allowance says whose allowance of connections, rates and bytes a
	// connection from uid, made by process pid, draws on. It is asked at
	// accept, before the connector is pinned.
	Allowance(uid, pid uint32) Group
	// SignalsDropped counts n signals that peers which fell behind
	// will not get.
	SignalsDropped(n uint64)
}

// Logf writes one log line at a syslog priority.
type Logf func(prio int, format string, args ...any)

// Listen creates the peer-to-peer socket at path (used when contidd is
// not socket-activated). Anyone may connect, since reads are public;
// contidd authorizes each tag request itself.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	// A socket left behind by a crashed contidd would make bind fail.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// Server serves the peer-to-peer socket. Its lock guards only the set
// of connections and their counts; nothing holds it, or any other lock,
// across socket I/O: each connection has a reader and a writer of its own,
// and signals are only queued (see outQueue).
type Server struct {
	d        Dispatcher
	logf     Logf
	guid     string
	budget   byteBudget
	connects *rates
	messages *rates

	mu      sync.Mutex
	conns   map[*peerConn]struct{}
	byGroup map[Group]int
	nonRoot int
	nextID  uint64

	// What was refused or fell behind, for the periodic summary in the
	// log.
	refusedPeers, slowPeers, dropped atomic.Uint64
	fallback                         sync.Once
}

// usePeerPidfd: take the connecting process's pidfd from the socket
// (SO_PEERPIDFD, Linux 6.5) where the kernel has it. A test build turns
// it off (-ldflags -X) to run the fallback, pidfd_open at accept, on a
// kernel that has it.
var usePeerPidfd = "yes"

// confirmConnector: in the fallback, check that the process pinned holds
// the connection (holdsPeer). Only a test build turns it off, to show the
// attack it stops.
var confirmConnector = "yes"

// New returns a server for d; its signals may be queued with Emit before
// it serves.
func New(d Dispatcher, logf Logf) (*Server, error) {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return nil, err
	}
	return &Server{d: d, logf: logf, guid: hex.EncodeToString(g[:]),
		connects: newRates(connectRate, connectBurst, allConnectRate, allConnectBurst),
		messages: newRates(messageRate, messageBurst, allMessageRate, allMessageBurst),
		conns:    map[*peerConn]struct{}{}, byGroup: map[Group]int{}}, nil
}

// Serve answers D-Bus peer-to-peer connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go s.summarize(ctx)
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				s.drain(shutdownGrace)
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		c, err := s.accept(uc)
		if err != nil {
			uc.Close()
			continue
		}
		go c.serve()
	}
}

// accept reads the credentials the kernel recorded at connect, admits
// the connection within its user's allowance and pins the connecting
// process. A refused connection costs ten system calls in all (as traced
// under 1,000 hostile clients): three for the accept with Go's
// registration of the socket, SO_PEERCRED, four to learn whose allowance
// it draws on (Dispatcher.Allowance), and two for the close.
func (s *Server) accept(uc *net.UnixConn) (*peerConn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", errors.Join(err, cerr))
	}
	g := s.d.Allowance(cred.Uid, uint32(cred.Pid))
	// The queue exists before the connection is listed: emit may reach
	// it at once.
	c := &peerConn{srv: s, conn: uc, uid: cred.Uid, pid: uint32(cred.Pid), group: g, out: newOutQueue(&s.budget, g)}
	c.out.send = c.sendNow
	if !s.admit(c) {
		return nil, fmt.Errorf("UID %d holds too many connections or opens them too fast", cred.Uid)
	}
	peerPidfd := -1
	perr := error(unix.ENOPROTOOPT)
	if usePeerPidfd == "yes" {
		_ = raw.Control(func(fd uintptr) {
			peerPidfd, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		})
		if perr != nil {
			peerPidfd = -1
		}
	}
	// Without SO_PEERPIDFD the PID is opened now: the process that has it
	// at accept is taken for the one that connected.
	if errors.Is(perr, unix.ENOPROTOOPT) {
		s.fallback.Do(func() {
			s.logf(prioInfo, "No SO_PEERPIDFD (Linux 6.5): peer-to-peer clients are pinned with pidfd_open when their connection is accepted.")
		})
	}
	fallback := peerPidfd < 0
	c.origin = Pin(cred.Uid, uint32(cred.Pid), peerPidfd)
	if fallback && confirmConnector == "yes" && c.origin.Pinned() {
		var peer uint64
		var derr error
		_ = raw.Control(func(fd uintptr) { peer, derr = peerInode(int(fd)) })
		held := false
		if derr == nil {
			held, derr = holdsPeer(c.origin.PID, peer)
		}
		if !held {
			// Every request of this connection is then refused as coming
			// from a connector that is gone.
			s.logf(prioDebug, "Peer-to-peer connection of PID %d: %v", cred.Pid, errors.Join(errNotPeer, derr))
			c.origin.Release()
		}
	}
	return c, nil
}

// shutdownGrace is how long a stopping contidd lets accepted connections
// finish. A client accepted just before SIGTERM (systemctl restart) is
// answered rather than cut off mid-call; clients that arrive later wait
// in the socket, which systemd holds, for the next contidd.
const shutdownGrace = 3 * time.Second

// drain waits up to grace for the open connections to end, then closes
// the rest (long-lived clients such as signal watchers).
func (s *Server) drain(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		s.mu.Lock()
		open := make([]*peerConn, 0, len(s.conns))
		for c := range s.conns {
			open = append(open, c)
		}
		s.mu.Unlock()
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, c := range open {
				c.shutdown()
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// admit registers c unless its group has used its allowance. Root has an
// allowance of its own, so the orchestrators that tag are never locked
// out by users.
func (s *Server) admit(c *peerConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := s.byGroup[c.group]
	limit := maxConnsPerGroup
	if c.group.IsRoot() {
		limit = maxRootConns
	}
	if mine >= limit || !c.group.IsRoot() && s.nonRoot >= maxP2PConns || !s.connects.allow(c.group, time.Now()) {
		// Counted, not logged one by one: a peer must not write to the
		// log at the rate it can connect.
		s.refusedPeers.Add(1)
		return false
	}
	s.byGroup[c.group]++
	if !c.group.IsRoot() {
		s.nonRoot++
	}
	s.nextID++
	c.unique = ":1." + strconv.FormatUint(s.nextID, 10)
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *peerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	if s.byGroup[c.group]--; s.byGroup[c.group] <= 0 {
		delete(s.byGroup, c.group)
	}
	if !c.group.IsRoot() {
		s.nonRoot--
	}
}

// Emit queues a signal to every peer. A peer whose queue is full has
// fallen behind: the signal is dropped and counted, and the peer
// disconnected.
func (s *Server) Emit(path godbus.ObjectPath, iface, member string, body ...any) {
	msg := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(path),
		godbus.FieldInterface: godbus.MakeVariant(iface),
		godbus.FieldMember:    godbus.MakeVariant(member),
		godbus.FieldSender:    godbus.MakeVariant(client.BusName),
	}, Body: body}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	b, err := encodeMessage(msg)
	if err != nil {
		s.logf(prioErr, "BUG: cannot encode signal %s.%s: %v", iface, member, err)
		return
	}
	s.mu.Lock()
	conns := make([]*peerConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Out of its reserve with the budgets full, a listener is as far
		// behind as one whose queue is full: ~400 signals fit the reserve.
		if err := c.out.push(bytes.Clone(b), true); errors.Is(err, errBehind) || errors.Is(err, errNoBudget) {
			s.fellBehind(c, 1)
		}
	}
}

// fellBehind disconnects a peer that does not read, counting the signals
// it will not get.
func (s *Server) fellBehind(c *peerConn, dropped int) {
	if c.behind.Swap(true) {
		s.countDropped(dropped)
		return
	}
	s.slowPeers.Add(1)
	s.countDropped(dropped)
	// Closed aside: closing a socket frees what its peer still has queued
	// there, descriptors too, which takes milliseconds, and the emitter
	// that found the peer behind has every other peer to serve.
	go c.shutdown()
}

func (s *Server) countDropped(n int) {
	if n > 0 {
		s.dropped.Add(uint64(n))
		s.d.SignalsDropped(uint64(n))
	}
}

// summarize says once a minute, at most, how many peers were turned away
// or fell behind, so an operator learns of it without a peer being able to
// flood the log.
func (s *Server) summarize(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.connects.prune(now)
			s.messages.prune(now)
			if n := s.slowPeers.Swap(0); n > 0 {
				s.logf(prioNotice, "Disconnected %d peer-to-peer clients in the last minute that did not read what they were sent; %d signals to them were dropped (property SignalsDropped).", n, s.dropped.Swap(0))
			}
			if n := s.refusedPeers.Swap(0); n > 0 {
				s.logf(prioNotice, "Turned away %d peer-to-peer connections in the last minute: their users had used their allowance of connections, or opened them too fast.", n)
			}
		}
	}
}

// encodeMessage encodes msg little-endian with serial 0; the queue sets
// the serial when the message takes its place. godbus cannot set a serial
// on a message it did not send itself, so it is patched into the encoded
// header (bytes 8 to 11).
func encodeMessage(msg *godbus.Message) ([]byte, error) {
	if len(msg.Body) == 1 {
		if rows, ok := msg.Body[0].([]client.ContainerRow); ok {
			return encodeRowsMessage(msg, rows)
		}
	}
	var buf bytes.Buffer
	fds, err := msg.EncodeToWithFDs(&buf, binary.LittleEndian)
	if err != nil {
		return nil, err
	}
	if len(fds) > 0 {
		return nil, errors.New("contidd never sends descriptors")
	}
	return buf.Bytes(), nil
}
