package client

import (
	"context"
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

// The Manager's signals, by member name.
const (
	SignalContainerNew     = "ContainerNew"
	SignalContainerRemoved = "ContainerRemoved"
	SignalTamperDenied     = "TamperDenied"
)

// Signal is one signal of the Manager. Container is set for ContainerNew
// and ContainerRemoved, PID and Operation for TamperDenied.
type Signal struct {
	Member    string
	ID        contid.ID
	Container godbus.ObjectPath
	PID       uint32
	Operation string
}

// parseSignal reads a Manager signal, checking its signature: anything
// else on the connection (NameAcquired, other interfaces) is not one.
func parseSignal(s *godbus.Signal) (Signal, bool) {
	if s.Path != ManagerPath {
		return Signal{}, false
	}
	var sig Signal
	switch s.Name {
	case ManagerInterface + "." + SignalContainerNew, ManagerInterface + "." + SignalContainerRemoved:
		var id uint64
		if godbus.Store(s.Body, &id, &sig.Container) != nil {
			return Signal{}, false
		}
		sig.ID = contid.ID(id)
	case ManagerInterface + "." + SignalTamperDenied:
		var id uint64
		if godbus.Store(s.Body, &id, &sig.PID, &sig.Operation) != nil {
			return Signal{}, false
		}
		sig.ID = contid.ID(id)
	default:
		return Signal{}, false
	}
	sig.Member = s.Name[len(ManagerInterface)+1:]
	return sig, true
}

// WatchSignals subscribes to the Manager's signals and delivers them until
// ctx ends or the connection closes; then the channel is closed.
//
// On the system bus the match rule names org.contid1 as the sender, and
// each signal's sender is checked against the name's current owner as
// well: the bus delivers a signal addressed to this connection whatever
// the match rules, so any peer could otherwise forge one. On contidd's
// peer-to-peer socket contidd is the only peer, and it signs its
// messages with the bus name.
func (c *Client) WatchSignals(ctx context.Context) (<-chan Signal, error) {
	raw := make(chan *godbus.Signal, 64)
	c.conn.Signal(raw)
	err := c.conn.AddMatchSignalContext(ctx,
		godbus.WithMatchSender(BusName),
		godbus.WithMatchObjectPath(ManagerPath),
		godbus.WithMatchInterface(ManagerInterface))
	if err != nil {
		c.conn.RemoveSignal(raw)
		return nil, fmt.Errorf("subscribe to contidd's signals: %w", fromDBusError(err))
	}
	out := make(chan Signal, 64)
	go func() {
		defer close(out)
		defer c.conn.RemoveSignal(raw)
		owner := ""
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-raw:
				if !ok {
					return
				}
				sig, ok := parseSignal(s)
				if !ok || !c.fromContidd(ctx, s.Sender, &owner) {
					continue
				}
				select {
				case out <- sig:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// fromContidd reports whether sender is contidd: the bus name itself (as
// contidd's socket names it), or the unique name owning it. owner caches
// that unique name; it is asked again when a sender differs, since
// contidd gets a new one when it restarts.
func (c *Client) fromContidd(ctx context.Context, sender string, owner *string) bool {
	if sender == BusName || sender != "" && sender == *owner {
		return true
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	var now string
	if c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&now) != nil {
		return false
	}
	*owner = now
	return sender == now
}
