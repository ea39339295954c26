// Package client is the typed Go client of contid's org.contid1 D-Bus
// API, with its public names: the bus name, object paths, interfaces and
// error names. contidctl and other programs import it without linking
// the daemon, the registry or the kernel layer.
package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
)

// DefaultSocket is the socket-activated peer-to-peer endpoint.
const DefaultSocket = "/run/contid/bus"

// Client is a typed client of org.contid1. Errors from contidd come back
// as *RemoteError, which unwraps to the registry and dbus sentinels.
type Client struct {
	conn    *godbus.Conn
	obj     godbus.BusObject
	flags   godbus.Flags
	timeout time.Duration
}

// Each call waits at most this long for its reply unless the caller's
// context ends sooner: sd-bus's default method call timeout, so a stalled
// contidd fails a command as it would fail systemctl. A call that lets
// polkit ask a person waits longer than contidd's own two minutes for an
// interactive polkit check, so contidd's answer, not the client's
// impatience, ends it.
const (
	DefaultCallTimeout     = 25 * time.Second
	InteractiveCallTimeout = 150 * time.Second
)

// SetCallTimeout sets how long each call waits for its reply; 0 restores
// the defaults above.
func (c *Client) SetCallTimeout(d time.Duration) { c.timeout = d }

// bounded gives one call its deadline.
func (c *Client) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.timeout
	switch {
	case d > 0:
	case c.flags&godbus.FlagAllowInteractiveAuthorization != 0:
		d = InteractiveCallTimeout
	default:
		d = DefaultCallTimeout
	}
	return context.WithTimeout(ctx, d)
}

// AllowInteractiveAuthorization sets D-Bus's ALLOW_INTERACTIVE_AUTHORIZATION
// flag on the calls that follow, or stops setting it: contidd then lets
// polkit ask the user to authenticate (through an agent the caller
// runs, such as pkttyagent) instead of refusing a call polkit would allow
// only after authentication. Set it only where someone can answer: the
// call waits while polkit asks.
func (c *Client) AllowInteractiveAuthorization(allow bool) {
	if allow {
		c.flags |= godbus.FlagAllowInteractiveAuthorization
	} else {
		c.flags &^= godbus.FlagAllowInteractiveAuthorization
	}
}

// ConnectBus connects to contidd on the system bus at address ("" = the
// default, honouring DBUS_SYSTEM_BUS_ADDRESS).
func ConnectBus(address string) (*Client, error) {
	var conn *godbus.Conn
	var err error
	if address == "" {
		conn, err = godbus.ConnectSystemBus()
	} else {
		conn, err = godbus.Connect(address)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return &Client{conn: conn, obj: conn.Object(BusName, ManagerPath)}, nil
}

// ConnectP2P connects to contidd's peer-to-peer socket at path.
func ConnectP2P(path string) (*Client, error) {
	conn, err := godbus.Dial("unix:path=" + godbus.EscapeBusAddressValue(path))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("authenticate to %s: %w", path, err)
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello to %s: %w", path, err)
	}
	return &Client{conn: conn, obj: conn.Object(BusName, ManagerPath)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection, for signal subscriptions.
func (c *Client) Conn() *godbus.Conn { return c.conn }

// TagOptions are the a{sv} options of the Tag* methods.
type TagOptions struct {
	Name string
	// Manager, Image and ManagerID say what started the container.
	Manager   string
	Image     string
	ManagerID string
	// UUID is the container's instance UUID (e.g. a pod UID); empty
	// lets contidd draw one.
	UUID         string
	AllowNesting bool
	// AllowBPF and AllowModules let the container load BPF programs
	// and kernel modules in enforcing mode.
	AllowBPF     bool
	AllowModules bool
	JoinPolicy   string // "", "tag" or "ignore"
}

// Map encodes the options, leaving out unset ones.
func (o TagOptions) Map() map[string]godbus.Variant {
	m := map[string]godbus.Variant{}
	if o.Name != "" {
		m["Name"] = godbus.MakeVariant(o.Name)
	}
	for k, v := range map[string]string{"Manager": o.Manager, "Image": o.Image, "ManagerID": o.ManagerID, "UUID": o.UUID} {
		if v != "" {
			m[k] = godbus.MakeVariant(v)
		}
	}
	for k, v := range map[string]bool{"AllowNesting": o.AllowNesting, "AllowBPF": o.AllowBPF, "AllowModules": o.AllowModules} {
		if v {
			m[k] = godbus.MakeVariant(true)
		}
	}
	if o.JoinPolicy != "" {
		m["JoinPolicy"] = godbus.MakeVariant(o.JoinPolicy)
	}
	return m
}

// call calls a Manager method. The message is built here rather than by
// godbus's BusObject, which keeps only the NO_AUTO_START and
// NO_REPLY_EXPECTED flags of those it is given and so would drop
// ALLOW_INTERACTIVE_AUTHORIZATION.
func (c *Client) call(ctx context.Context, method string, args ...any) *godbus.Call {
	msg := &godbus.Message{
		Type:  godbus.TypeMethodCall,
		Flags: c.flags,
		Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldDestination: godbus.MakeVariant(BusName),
			godbus.FieldPath:        godbus.MakeVariant(ManagerPath),
			godbus.FieldInterface:   godbus.MakeVariant(ManagerInterface),
			godbus.FieldMember:      godbus.MakeVariant(method),
		},
		Body: args,
	}
	if len(args) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(args...))
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	return <-c.conn.SendWithContext(ctx, msg, make(chan *godbus.Call, 1)).Done
}

func (c *Client) tag(ctx context.Context, method string, target any, id contid.ID, opts map[string]godbus.Variant) (contid.ID, error) {
	var rid uint64
	var path godbus.ObjectPath
	if err := c.call(ctx, method, target, uint64(id), opts).Store(&rid, &path); err != nil {
		return 0, fromDBusError(err)
	}
	return contid.ID(rid), nil
}

// TagCgroup tags a cgroup given relative to the cgroup2 root.
func (c *Client) TagCgroup(ctx context.Context, cgroup string, id contid.ID, o TagOptions) (contid.ID, error) {
	return c.tag(ctx, "TagCgroup", cgroup, id, o.Map())
}

// TagCgroupRaw passes options as given, for callers (and tests) that need
// to send exactly a particular a{sv}.
func (c *Client) TagCgroupRaw(ctx context.Context, cgroup string, id contid.ID, opts map[string]godbus.Variant) (contid.ID, error) {
	return c.tag(ctx, "TagCgroup", cgroup, id, opts)
}

// TagUnit tags a systemd unit's cgroup.
func (c *Client) TagUnit(ctx context.Context, unit string, id contid.ID, o TagOptions) (contid.ID, error) {
	return c.tag(ctx, "TagUnit", unit, id, o.Map())
}

// TagMachine tags a machined machine's cgroup.
func (c *Client) TagMachine(ctx context.Context, machine string, id contid.ID, o TagOptions) (contid.ID, error) {
	return c.tag(ctx, "TagMachine", machine, id, o.Map())
}

// TagPID tags one fresh process by PID.
func (c *Client) TagPID(ctx context.Context, pid uint32, id contid.ID, o TagOptions) (contid.ID, error) {
	return c.tag(ctx, "TagPID", pid, id, o.Map())
}

// TagProcess tags one fresh process by pidfd (passed over the socket).
func (c *Client) TagProcess(ctx context.Context, pidfd int, id contid.ID, o TagOptions) (contid.ID, error) {
	return c.tag(ctx, "TagProcess", godbus.UnixFD(pidfd), id, o.Map())
}

func (c *Client) lookup(ctx context.Context, method string, arg any) (contid.ID, error) {
	var path godbus.ObjectPath
	if err := c.call(ctx, method, arg).Store(&path); err != nil {
		return 0, fromDBusError(err)
	}
	id, ok := ParseContainerPath(path)
	if !ok {
		return 0, fmt.Errorf("contidd returned an unexpected object path %q", path)
	}
	return id, nil
}

// GetContainer checks that container id exists.
func (c *Client) GetContainer(ctx context.Context, id contid.ID) (contid.ID, error) {
	return c.lookup(ctx, "GetContainer", uint64(id))
}

// GetContainerByPID returns the container a process is in.
func (c *Client) GetContainerByPID(ctx context.Context, pid uint32) (contid.ID, error) {
	return c.lookup(ctx, "GetContainerByPID", pid)
}

// GetContainerByUnit returns the container of a unit.
func (c *Client) GetContainerByUnit(ctx context.Context, unit string) (contid.ID, error) {
	return c.lookup(ctx, "GetContainerByUnit", unit)
}

// ContainerRow is one element of ListContainers' a(tsssto), as it goes
// on the wire; contidd sends it and the client reads it.
type ContainerRow struct {
	ID     uint64
	Name   string
	Unit   string
	Cgroup string
	Parent uint64
	Path   godbus.ObjectPath
}

// ListEntry is one row of ListContainers.
type ListEntry struct {
	ID     contid.ID         `json:"id"`
	Name   string            `json:"name"`
	Unit   string            `json:"unit"`
	Cgroup string            `json:"cgroup"`
	Parent contid.ID         `json:"parent"`
	Object godbus.ObjectPath `json:"object"`
}

// ListContainers lists every container record, active and exited.
func (c *Client) ListContainers(ctx context.Context) ([]ListEntry, error) {
	var raw []ContainerRow
	if err := c.call(ctx, "ListContainers").Store(&raw); err != nil {
		return nil, fromDBusError(err)
	}
	out := make([]ListEntry, len(raw))
	for i, r := range raw {
		out[i] = ListEntry{contid.ID(r.ID), r.Name, r.Unit, r.Cgroup, contid.ID(r.Parent), r.Path}
	}
	return out, nil
}

// ManagerInfo holds the Manager's properties.
type ManagerInfo struct {
	Version           string   `json:"version"`
	Enforcement       string   `json:"enforcement"`
	EnforcementReason string   `json:"enforcement_reason"`
	Containers        uint32   `json:"containers"`
	EventsWritten     uint64   `json:"events_written"`
	EventsLost        uint64   `json:"events_lost"`
	EventsAmbiguous   uint64   `json:"events_ambiguous"`
	SignalsDropped    uint64   `json:"signals_dropped"`
	AuditStream       string   `json:"audit_stream"`
	AuditRulesLoaded  uint32   `json:"audit_rules_loaded"`
	AuditRulesMissing []string `json:"audit_rules_missing"`
}

func (c *Client) getAll(ctx context.Context, obj godbus.BusObject, iface string) (map[string]godbus.Variant, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	var props map[string]godbus.Variant
	if err := obj.CallWithContext(ctx, propertiesInterface+".GetAll", 0, iface).Store(&props); err != nil {
		return nil, fromDBusError(err)
	}
	return props, nil
}

// Manager reads the Manager's properties.
func (c *Client) Manager(ctx context.Context) (ManagerInfo, error) {
	var mi ManagerInfo
	props, err := c.getAll(ctx, c.obj, ManagerInterface)
	if err != nil {
		return mi, err
	}
	err = errors.Join(
		store(props, "Version", &mi.Version), store(props, "Enforcement", &mi.Enforcement),
		store(props, "EnforcementReason", &mi.EnforcementReason), store(props, "Containers", &mi.Containers),
		store(props, "EventsWritten", &mi.EventsWritten), store(props, "EventsLost", &mi.EventsLost),
		store(props, "EventsAmbiguous", &mi.EventsAmbiguous),
		store(props, "SignalsDropped", &mi.SignalsDropped),
		store(props, "AuditStream", &mi.AuditStream), store(props, "AuditRulesLoaded", &mi.AuditRulesLoaded),
		store(props, "AuditRulesMissing", &mi.AuditRulesMissing))
	return mi, err
}

// ContainerInfo holds a container object's properties.
type ContainerInfo struct {
	ID           contid.ID    `json:"id"`
	Name         string       `json:"name"`
	Unit         string       `json:"unit"`
	Manager      string       `json:"manager"`
	Image        string       `json:"image"`
	ManagerID    string       `json:"manager_id"`
	UUID         string       `json:"uuid"`
	ControlGroup string       `json:"control_group"`
	CgroupID     uint64       `json:"cgroup_id"`
	ParentID     contid.ID    `json:"parent_id"`
	Chain        contid.Chain `json:"-"`
	ChainString  string       `json:"chain"`
	Depth        uint32       `json:"depth"`
	State        string       `json:"state"`
	CreatedUSec  uint64       `json:"created_usec"`
	OwnerUID     uint32       `json:"owner_uid"`
	OwnerPID     uint32       `json:"owner_pid"`
	Flags        []string     `json:"flags"`
	AllowBPF     bool         `json:"allow_bpf"`
	AllowModules bool         `json:"allow_modules"`
	// DenialsSuppressed: the container's refusals in enforcing mode that
	// were counted rather than recorded one by one.
	DenialsSuppressed uint64 `json:"denials_suppressed"`
}

// Container reads container id's properties.
func (c *Client) Container(ctx context.Context, id contid.ID) (ContainerInfo, error) {
	var ci ContainerInfo
	props, err := c.getAll(ctx, c.conn.Object(BusName, ContainerPath(id)), ContainerInterface)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) && re.Name == NameUnknownObject {
			return ci, &RemoteError{Name: NameNoSuchContainer, Message: fmt.Sprintf("no container %d", id)}
		}
		return ci, err
	}
	var id64, parent uint64
	var chain []uint64
	err = errors.Join(
		store(props, "Id", &id64), store(props, "Name", &ci.Name), store(props, "Unit", &ci.Unit),
		store(props, "Manager", &ci.Manager), store(props, "Image", &ci.Image), store(props, "ManagerID", &ci.ManagerID),
		store(props, "UUID", &ci.UUID),
		store(props, "ControlGroup", &ci.ControlGroup), store(props, "CgroupId", &ci.CgroupID),
		store(props, "ParentId", &parent), store(props, "Chain", &chain), store(props, "Depth", &ci.Depth),
		store(props, "State", &ci.State), store(props, "CreatedUSec", &ci.CreatedUSec),
		store(props, "OwnerUID", &ci.OwnerUID), store(props, "OwnerPID", &ci.OwnerPID), store(props, "Flags", &ci.Flags),
		store(props, "AllowBPF", &ci.AllowBPF), store(props, "AllowModules", &ci.AllowModules),
		store(props, "DenialsSuppressed", &ci.DenialsSuppressed))
	ci.ID, ci.ParentID = contid.ID(id64), contid.ID(parent)
	for _, x := range chain {
		ci.Chain = append(ci.Chain, contid.ID(x))
	}
	ci.ChainString = ci.Chain.String()
	return ci, err
}

// ListProcesses lists container id's live processes.
func (c *Client) ListProcesses(ctx context.Context, id contid.ID) ([]uint32, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	var pids []uint32
	err := c.conn.Object(BusName, ContainerPath(id)).CallWithContext(ctx, ContainerInterface+".ListProcesses", 0).Store(&pids)
	if err != nil {
		return nil, fromDBusError(err)
	}
	return pids, nil
}

func store(props map[string]godbus.Variant, name string, dst any) error {
	v, ok := props[name]
	if !ok {
		return fmt.Errorf("contidd did not send property %s", name)
	}
	if err := godbus.Store([]any{v.Value()}, dst); err != nil {
		return fmt.Errorf("property %s: %w", name, err)
	}
	return nil
}

// IsRemote reports whether err is a D-Bus error named name (or, if name
// ends in '.', any error in that namespace).
func IsRemote(err error, name string) bool {
	var re *RemoteError
	if !errors.As(err, &re) {
		return false
	}
	if strings.HasSuffix(name, ".") {
		return strings.HasPrefix(re.Name, name)
	}
	return re.Name == name
}
