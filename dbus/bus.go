package dbus

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// ErrNameTaken: another process owns org.contid1 (a second contidd).
var ErrNameTaken = errors.New("bus name org.contid1 is already owned")

// ServeBus connects to the system bus at address ("" = the default,
// honouring DBUS_SYSTEM_BUS_ADDRESS), serves the API there and owns
// org.contid1. What arrives is read through busRelay, which skips calls
// and signals too large to decode safely. The connection also carries
// contidd's calls to systemd, machined and polkit. The caller closes it,
// after LeaveBus: the end of ctx does not, since godbus would close it at
// once and drop the replies to calls still being answered.
func (m *Manager) ServeBus(ctx context.Context, address string) (*godbus.Conn, error) {
	peers, calls := newBusPeers(), newBusCalls()
	opts := []godbus.ConnOption{
		godbus.WithHandler(busHandler{m}),
		godbus.WithIncomingInterceptor(func(msg *godbus.Message) {
			peers.observe(msg)
			calls.in(msg)
		}),
		godbus.WithOutgoingInterceptor(calls.out),
		godbus.WithContext(context.WithoutCancel(ctx)),
	}
	conn, err := m.connectBus(address, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	// Until it is served, a stop closes the connection, so that a
	// dbus-daemon that no longer answers does not hold it; after that,
	// the caller closes it (LeaveBus first).
	stopSetUp := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopSetUp()
	// Before the name is owned, so no call arrives before its caller's
	// appearance can be seen.
	if err := peers.watch(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("follow the clients of the system bus: %w", err)
	}
	reply, err := conn.RequestName(client.BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("request %s: %w", client.BusName, err)
	}
	if reply != godbus.RequestNameReplyPrimaryOwner {
		conn.Close()
		return nil, ErrNameTaken
	}
	go func() {
		<-conn.Context().Done()
		peers.close()
	}()
	m.mu.Lock()
	first := m.sysbus == nil
	if m.sysbus != nil {
		delete(m.buses, m.sysbus)
		delete(m.busCalls, m.sysbus)
	}
	m.sysbus = conn
	if m.buses == nil {
		m.buses = map[*godbus.Conn]*busPeers{}
		m.busCalls = map[*godbus.Conn]*busCalls{}
	}
	m.buses[conn] = peers
	m.busCalls[conn] = calls
	m.mu.Unlock()
	if first {
		m.addEmitter(busEmitter{m})
	}
	return conn, nil
}

// relayBus: read the system bus through busRelay. Only a test build
// turns it off, to show what the relay stops.
var relayBus = "yes"

func (m *Manager) connectBus(address string, opts []godbus.ConnOption) (*godbus.Conn, error) {
	if relayBus != "yes" {
		if address == "" {
			return godbus.ConnectSystemBus(opts...)
		}
		return godbus.Connect(address, opts...)
	}
	relay, inner, err := dialBusRelay(address)
	if err != nil {
		return nil, err
	}
	go relay.run(func(format string, args ...any) { m.log(PrioWarning, format, args...) })
	conn, err := godbus.ConnectUnix(inner, opts...)
	if err != nil {
		inner.Close()
		return nil, err
	}
	go relay.answer(conn)
	return conn, nil
}

// OnBus reports whether contidd currently serves the system bus.
func (m *Manager) OnBus() bool {
	conn := m.systemBus()
	return conn != nil && conn.Connected()
}

// busEmitter signals on whatever system bus connection is current, so a
// reconnection (dbus-daemon restarted) needs no re-registration.
type busEmitter struct{ m *Manager }

func (e busEmitter) emit(path godbus.ObjectPath, iface, member string, body ...any) {
	if conn := e.m.systemBus(); conn != nil && conn.Connected() {
		_ = conn.Emit(path, iface+"."+member, body...)
	}
}

// busHandler routes every call godbus receives to the shared dispatcher;
// godbus answers org.freedesktop.DBus.Peer itself.
type busHandler struct{ m *Manager }

func (h busHandler) LookupObject(path godbus.ObjectPath) (godbus.ServerObject, bool) {
	if objectKind(path) == objNone {
		return nil, false
	}
	return busObject(h), true
}

type busObject busHandler

func (o busObject) LookupInterface(string) (godbus.Interface, bool) { return busIface(o), true }

type busIface busObject

func (i busIface) LookupMethod(string) (godbus.Method, bool) { return busMethod(i), true }

// busMethod takes the raw message (ArgumentDecoder) so the dispatcher sees
// the sender, the header flags and the unchecked body.
type busMethod busIface

type busCall struct {
	conn   *godbus.Conn
	sender string
	msg    *godbus.Message
}

func (busMethod) DecodeArguments(conn *godbus.Conn, sender string, msg *godbus.Message, _ []any) ([]any, error) {
	return []any{busCall{conn, sender, msg}}, nil
}

func (b busMethod) Call(args ...any) ([]any, error) {
	c := args[0].(busCall)
	defer closeMessageFDs(c.msg)
	body, derr := b.m.dispatch(&peer{bus: c.conn, sender: c.sender}, c.msg)
	if derr != nil {
		return nil, derr
	}
	return body, nil
}

func (busMethod) NumArguments() int     { return 0 }
func (busMethod) NumReturns() int       { return 0 }
func (busMethod) ArgumentValue(int) any { return nil }
func (busMethod) ReturnValue(int) any   { return nil }

// closeMessageFDs closes the descriptors a call carried, wherever in its
// body they are (an argument, an array, a variant, a dictionary), each
// once; contidd keeps none of them beyond the call. godbus gives no access
// to descriptors a message carries without naming them in its body; the
// bus policy (units/org.contid1.conf) lets no user but root send any.
func closeMessageFDs(msg *godbus.Message) {
	seen := map[godbus.UnixFD]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case godbus.UnixFD:
			if !seen[x] {
				seen[x] = true
				closeFD(int(x))
			}
		case godbus.Variant:
			walk(x.Value())
		default:
			rv := reflect.ValueOf(v)
			switch rv.Kind() {
			case reflect.Slice, reflect.Array:
				if rv.Type().Elem().Kind() == reflect.Uint8 {
					return
				}
				for i := 0; i < rv.Len(); i++ {
					walk(rv.Index(i).Interface())
				}
			case reflect.Map:
				for _, k := range rv.MapKeys() {
					walk(k.Interface())
					walk(rv.MapIndex(k).Interface())
				}
			case reflect.Struct:
				for i := 0; i < rv.NumField(); i++ {
					if rv.Type().Field(i).IsExported() {
						walk(rv.Field(i).Interface())
					}
				}
			}
		}
	}
	for _, v := range msg.Body {
		walk(v)
	}
}
