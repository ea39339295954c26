package dbus

import (
	"context"
	"net"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/internal/p2p"
)

// ListenP2P creates the peer-to-peer socket at path (used when contidd is
// not socket-activated). Anyone may connect, since reads are public;
// contidd authorizes each tag request itself.
func ListenP2P(path string) (*net.UnixListener, error) { return p2p.Listen(path) }

// ServeP2P answers D-Bus peer-to-peer connections on ln until ctx ends.
func (m *Manager) ServeP2P(ctx context.Context, ln *net.UnixListener) error {
	s, err := p2p.New(p2pService{m}, p2p.Logf(m.log))
	if err != nil {
		return err
	}
	m.addEmitter(p2pEmitter{s})
	return s.Serve(ctx, ln)
}

// p2pService is the Manager as the peer-to-peer server's dispatcher.
type p2pService struct{ m *Manager }

// Dispatch serves a call with the origin the server pinned at accept. The
// server keeps the origin's pidfd open until the call returns and closes
// it itself, so nothing here releases it.
func (s p2pService) Dispatch(o p2p.Origin, msg *godbus.Message) ([]any, *godbus.Error) {
	return s.m.dispatch(&peer{origin: originFromP2P(o)}, msg)
}

func (s p2pService) Allowance(uid, pid uint32) p2p.Group { return s.m.allowance(uid, pid) }

func (s p2pService) SignalsDropped(n uint64) { s.m.signalsDropped.Add(n) }

// p2pEmitter sends the Manager's signals to every peer-to-peer client.
type p2pEmitter struct{ s *p2p.Server }

func (e p2pEmitter) emit(path godbus.ObjectPath, iface, member string, body ...any) {
	e.s.Emit(path, iface, member, body...)
}

// originFromP2P is the service's view of what the server established
// about a connection.
func originFromP2P(o p2p.Origin) *origin {
	return &origin{uid: o.UID, pid: o.PID, pidfd: o.Pidfd, start: o.Identity.Start, image: o.Identity.Image, changed: o.Changed}
}
