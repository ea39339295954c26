package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/registry"
)

// tagRequest is what every Tag* method resolves its arguments to.
type tagRequest struct {
	id   uint64
	opts registry.Options
}

func parseTagRequest(id uint64, opts map[string]godbus.Variant) (tagRequest, error) {
	if err := validTagID(id); err != nil {
		return tagRequest{}, err
	}
	o, err := parseOptions(opts)
	if err != nil {
		return tagRequest{}, err
	}
	return tagRequest{id: id, opts: o}, nil
}

// resolveCgroup turns a validated cgroup path into a target: it must exist
// as a directory under the cgroup2 root. A cgroup that is never tagged is
// refused first, whether it exists or not.
func (m *Manager) resolveCgroup(p, unit string) (registry.CgroupTarget, error) {
	if err := m.cfg.Registry.CheckTaggable(p); err != nil {
		return registry.CgroupTarget{}, err
	}
	full := filepath.Join(m.cfg.Cgroups.Root(), p)
	fi, err := os.Stat(full)
	if err != nil || !fi.IsDir() {
		return registry.CgroupTarget{}, fmt.Errorf("%w: %s does not exist in the cgroup2 hierarchy", client.ErrNoSuchCgroup, registry.Truncate(p))
	}
	id, err := m.cfg.Cgroups.ID(p)
	if err != nil {
		return registry.CgroupTarget{}, fmt.Errorf("%w: %s: %v", client.ErrNoSuchCgroup, registry.Truncate(p), err)
	}
	return registry.CgroupTarget{Path: p, ID: id, Unit: unit}, nil
}

// existed reports whether an explicit ID already has a record, to tell a
// new container (ContainerNew) from an idempotent retry or a pod member.
func (m *Manager) existed(id uint64) bool {
	if id == 0 {
		return false
	}
	_, err := m.cfg.Registry.Get(contid.ID(id))
	return err == nil
}

// taggingCaller identifies and authorizes the caller of a Tag* method.
// One that is neither privileged nor in a (possibly nesting) container is
// refused here: nothing the registry could allow, and no need to reveal
// whether the target exists. The caller closes the result.
func (m *Manager) taggingCaller(ctx context.Context, p *peer, msg *godbus.Message, req tagRequest) (*callerInfo, error) {
	ci, err := m.identify(ctx, p)
	if err != nil {
		if ci != nil {
			return nil, m.refused(ci, req, "", err)
		}
		return nil, err
	}
	if !ci.Privileged {
		release, ok := m.tagCalls.enter(m.groups.group(ci.UID))
		if !ok {
			return nil, m.refused(ci, req, "", fmt.Errorf("%w: UID %d (with its subordinate UIDs) or all users together have too many tag requests waiting for polkit", contid.ErrLimitExceeded, ci.UID))
		}
		ci.release = release
	}
	challenge := m.authorizeTag(ctx, p, msg, ci)
	if !ci.Privileged && ci.Container == contid.Unset {
		why := fmt.Errorf("%w: tagging needs UID 0 or polkit authorization for %s", contid.ErrAccessDenied, client.PolkitActionTag)
		if challenge {
			why = fmt.Errorf("%w: %s polkit grants %s after authentication, and the call did not allow interactive authorization", contid.ErrAccessDenied, client.InteractiveAuthRequired, client.PolkitActionTag)
		}
		err := m.refused(ci, req, "", why)
		ci.close()
		return nil, err
	}
	return ci, nil
}

// tagCgroupAs authenticates the caller and tags a resolved cgroup.
// resolve may fill in options from what it learns (a machine's manager).
func (m *Manager) tagCgroupAs(ctx context.Context, p *peer, msg *godbus.Message, req *tagRequest, resolve func() (registry.CgroupTarget, error)) (uint64, godbus.ObjectPath, error) {
	ci, err := m.taggingCaller(ctx, p, msg, *req)
	if err != nil {
		return 0, "", err
	}
	defer ci.close()
	target, err := resolve()
	if err != nil {
		return 0, "", m.refused(ci, *req, "", err)
	}
	if c, ok, err := m.nameAutotagged(ci, *req, target); ok || err != nil {
		if err != nil {
			return 0, "", m.refused(ci, *req, target.Unit, err)
		}
		m.auditGranted(ci.Caller, c, false)
		return uint64(c.ID), client.ContainerPath(c.ID), nil
	}
	req.opts.Manager = apiManager(req.opts.Manager)
	had := m.existed(req.id)
	c, err := m.cfg.Registry.TagCgroup(ci.Caller, contid.ID(req.id), target, req.opts)
	if err != nil {
		return 0, "", m.refused(ci, *req, "", err)
	}
	return m.granted(ci, c, !had, "cgroup "+target.Path)
}

// nameAutotagged handles tagging a cgroup the kernel already tagged at
// mkdir (a machine under machine.slice): the ID exists and is write-once,
// so a request for "any ID" (or exactly that one) with no option but the
// container's name and origin (Name, Manager, Image, ManagerID, and a UUID
// only if it is the one the container got) names the container instead of
// failing. This is how the nspawn drop-in's
// `contidctl tag-unit --name=NAME` and the OCI hook attach the name. Who
// may name it is the registry's rule (Registry.Name). ok is false when
// the request is not of that kind.
func (m *Manager) nameAutotagged(ci *callerInfo, req tagRequest, t registry.CgroupTarget) (*registry.Container, bool, error) {
	c, err := m.cfg.Registry.ByCgroupPath(t.Path)
	if err != nil {
		// The hook of a container manager may call before the autotag
		// event was read from the ring buffer: the cgroup was made
		// just before. What the kernel holds decides.
		if c = m.adoptPending(t); c == nil {
			return nil, false, nil
		}
	}
	if c.Flags&contid.FlagAutotag == 0 || c.OwnerPID != 0 || c.State != registry.StateActive {
		return nil, false, nil
	}
	labels := registry.Options{Name: req.opts.Name, Manager: req.opts.Manager, Image: req.opts.Image, ManagerID: req.opts.ManagerID, UUID: req.opts.UUID}
	if (req.id != 0 && contid.ID(req.id) != c.ID) || req.opts != labels {
		return nil, false, nil // the registry refuses it with the precise error
	}
	nc, err := m.cfg.Registry.Name(ci.Caller, c.ID, labels, t.Unit)
	if err != nil {
		return nil, true, err
	}
	m.metadataChanged(c, nc, fmt.Sprintf("Process %d (uid %d)", ci.PID, ci.UID))
	return nc, true, nil
}

// adoptPending adopts a cgroup the kernel autotagged whose event has not
// been handled yet; nil when the kernel holds no autotag for it.
func (m *Manager) adoptPending(t registry.CgroupTarget) *registry.Container {
	if m.cfg.Tracker == nil {
		return nil
	}
	tag, err := m.cfg.Tracker.CgroupTag(t.ID)
	if err != nil || tag.Flags&contid.FlagAutotag == 0 {
		return nil
	}
	c, err := m.adoptAutotag(tag, registry.Cgroup{Path: t.Path, ID: t.ID})
	if err != nil {
		if refused, warn := m.refusedAdoption(tag, t.ID, t.Path); !refused || warn {
			m.log(PrioWarning, "Failed to adopt autotagged cgroup %s: %v", t.Path, err)
		}
		return nil
	}
	return c
}

// apiManager is the manager recorded for a container tagged through the
// API by a caller that did not say which manager it is.
func apiManager(requested string) string {
	if requested == "" {
		return "api"
	}
	return requested
}

// metadataChanged logs and announces a new name or unit.
func (m *Manager) metadataChanged(old, c *registry.Container, who string) {
	if old.Name == c.Name && old.Unit == c.Unit && old.Manager == c.Manager && old.Image == c.Image && old.ManagerID == c.ManagerID {
		return
	}
	m.log(PrioInfo, "%s named container %d (%s) %q, unit %q, manager %q, image %q, manager ID %q.", who, c.ID, firstCgroup(c), c.Name, c.Unit, c.Manager, c.Image, c.ManagerID)
	m.emit(client.ContainerPath(c.ID), ifaceProperties, "PropertiesChanged", client.ContainerInterface,
		map[string]godbus.Variant{
			"Name": godbus.MakeVariant(c.Name), "Unit": godbus.MakeVariant(c.Unit),
			"Manager": godbus.MakeVariant(c.Manager), "Image": godbus.MakeVariant(c.Image), "ManagerID": godbus.MakeVariant(c.ManagerID),
		}, []string{})
}

// granted logs, audits and announces a tag the registry accepted.
func (m *Manager) granted(ci *callerInfo, c *registry.Container, isNew bool, target string) (uint64, godbus.ObjectPath, error) {
	m.log(PrioInfo, "Process %d (uid %d) tagged %s as %s.", ci.PID, ci.UID, target, c.Chain)
	if g := grantNames(c.Flags); isNew && g != "" {
		m.log(PrioNotice, "Container %d (%s) was granted %s by process %d (uid %d): in enforcing mode its processes may do what the option allows although contid.conf refuses it to tagged processes.",
			c.ID, c.Chain, g, ci.PID, ci.UID)
	}
	m.auditGranted(ci.Caller, c, isNew)
	if isNew {
		m.containerNew(c)
	} else {
		// A further cgroup of a pod may bring its first processes.
		m.notePopulated(c)
	}
	return uint64(c.ID), client.ContainerPath(c.ID), nil
}

// grantNames names the exceptions to enforcing mode that flags hold, as
// the tag options spell them; empty for none.
func grantNames(f contid.Flags) string {
	var names []string
	if f&contid.FlagAllowBPF != 0 {
		names = append(names, "AllowBPF")
	}
	if f&contid.FlagAllowModules != 0 {
		names = append(names, "AllowModules")
	}
	return strings.Join(names, " and ")
}

// refused logs and audits a refused tag request and returns its error.
func (m *Manager) refused(ci *callerInfo, req tagRequest, unit string, err error) error {
	m.log(PrioNotice, "Refused tag request of process %d (uid %d): %v", ci.PID, ci.UID, err)
	m.auditRefused(ci.Caller, req.id, requestLabels(req.opts, unit), err)
	return err
}

// TagCgroup implements Manager.TagCgroup.
func (m *Manager) tagCgroup(ctx context.Context, p *peer, msg *godbus.Message, cgroup string, id uint64, opts map[string]godbus.Variant) (uint64, godbus.ObjectPath, error) {
	req, err := parseTagRequest(id, opts)
	if err != nil {
		return 0, "", err
	}
	if err := registry.ValidateCgroupPath(cgroup); err != nil {
		return 0, "", err
	}
	return m.tagCgroupAs(ctx, p, msg, &req, func() (registry.CgroupTarget, error) { return m.resolveCgroup(cgroup, "") })
}

func (m *Manager) tagUnit(ctx context.Context, p *peer, msg *godbus.Message, unit string, id uint64, opts map[string]godbus.Variant) (uint64, godbus.ObjectPath, error) {
	req, err := parseTagRequest(id, opts)
	if err != nil {
		return 0, "", err
	}
	if err := validUnitName(unit); err != nil {
		return 0, "", err
	}
	return m.tagCgroupAs(ctx, p, msg, &req, func() (registry.CgroupTarget, error) {
		cg, err := m.unitCgroup(ctx, unit)
		if err != nil {
			return registry.CgroupTarget{}, err
		}
		return m.resolveCgroup(cg, unit)
	})
}

func (m *Manager) tagMachine(ctx context.Context, p *peer, msg *godbus.Message, machine string, id uint64, opts map[string]godbus.Variant) (uint64, godbus.ObjectPath, error) {
	req, err := parseTagRequest(id, opts)
	if err != nil {
		return 0, "", err
	}
	if err := validMachineName(machine); err != nil {
		return 0, "", err
	}
	if req.opts.Name == "" {
		req.opts.Name = machine
	}
	return m.tagCgroupAs(ctx, p, msg, &req, func() (registry.CgroupTarget, error) {
		unit, service, err := m.machineInfo(ctx, machine)
		if err != nil {
			return registry.CgroupTarget{}, err
		}
		if req.opts.Manager == "" {
			// machined knows who registered the machine ("nspawn").
			req.opts.Manager = service
		}
		cg, err := m.unitCgroup(ctx, unit)
		if err != nil {
			return registry.CgroupTarget{}, fmt.Errorf("%w: machine %s: %v", client.ErrNoSuchMachine, machine, err)
		}
		return m.resolveCgroup(cg, unit)
	})
}

// tagProcess implements TagProcess (the pidfd came from the caller) and
// TagPID (open opens one, once the caller is authorized, so a request
// waiting on polkit holds no descriptor of its target).
func (m *Manager) tagProcess(ctx context.Context, p *peer, msg *godbus.Message, open func() (int, error), id uint64, opts map[string]godbus.Variant) (uint64, godbus.ObjectPath, error) {
	req, err := parseTagRequest(id, opts)
	if err != nil {
		return 0, "", err
	}
	ci, err := m.taggingCaller(ctx, p, msg, req)
	if err != nil {
		return 0, "", err
	}
	defer ci.close()
	pidfd, err := open()
	if err != nil {
		return 0, "", m.refused(ci, req, "", err)
	}
	defer closeFD(pidfd)
	target, err := freshProcess(pidfd, ci.PID, m.cfg.Cgroups)
	if err != nil {
		return 0, "", m.refused(ci, req, "", err)
	}
	req.opts.Manager = apiManager(req.opts.Manager)
	had := m.existed(req.id)
	c, err := m.cfg.Registry.TagProcess(ci.Caller, contid.ID(req.id), target, req.opts)
	if err != nil {
		return 0, "", m.refused(ci, req, "", err)
	}
	return m.granted(ci, c, !had, fmt.Sprintf("process %d", target.PID))
}

// getProperty is godbus's GetProperty bound to ctx, which that method
// takes none of: a stalled systemd or machined must not hold a call, or
// the follower of machined's signals, forever.
func getProperty(ctx context.Context, obj godbus.BusObject, name string) (godbus.Variant, error) {
	i := strings.LastIndex(name, ".")
	var v godbus.Variant
	err := obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, name[:i], name[i+1:]).Store(&v)
	return v, err
}

// errNoSystemd is wrapped when the bus or systemd is not there at all.
var errNoSystemd = errors.New("systemd is not reachable on the system bus")

// unitCgroup asks systemd for a unit's ControlGroup.
func (m *Manager) unitCgroup(ctx context.Context, unit string) (string, error) {
	conn := m.systemBus()
	if conn == nil {
		return "", fmt.Errorf("%w: %s: %v", client.ErrNoSuchUnit, unit, errNoSystemd)
	}
	var path godbus.ObjectPath
	err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.GetUnit", godbus.FlagNoAutoStart, unit).Store(&path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", client.ErrNoSuchUnit, unit, err)
	}
	iface := "org.freedesktop.systemd1." + unitTypeInterface(unit)
	v, err := getProperty(ctx, conn.Object("org.freedesktop.systemd1", path), iface+".ControlGroup")
	if err != nil {
		return "", fmt.Errorf("%w: %s has no control group: %v", client.ErrNoSuchUnit, unit, err)
	}
	cg, _ := v.Value().(string)
	if cg == "" {
		return "", fmt.Errorf("%w: %s is not running (no control group)", client.ErrNoSuchUnit, unit)
	}
	if err := registry.ValidateCgroupPath(cg); err != nil {
		return "", fmt.Errorf("%w: systemd gave %s an unusable control group %q", client.ErrNoSuchUnit, unit, cg)
	}
	return cg, nil
}

func unitTypeInterface(unit string) string {
	switch filepath.Ext(unit) {
	case ".scope":
		return "Scope"
	case ".slice":
		return "Slice"
	case ".socket":
		return "Socket"
	case ".mount":
		return "Mount"
	case ".swap":
		return "Swap"
	}
	return "Service"
}

// machineInfo asks machined which unit runs a machine, and which service
// registered it ("nspawn" for systemd-nspawn), as a manager name; that is
// empty when machined's is not one contid records.
func (m *Manager) machineInfo(ctx context.Context, machine string) (unit, service string, err error) {
	conn := m.systemBus()
	if conn == nil {
		return "", "", fmt.Errorf("%w: %s: machined is not reachable on the system bus", client.ErrNoSuchMachine, machine)
	}
	var path godbus.ObjectPath
	err = conn.Object("org.freedesktop.machine1", "/org/freedesktop/machine1").
		CallWithContext(ctx, "org.freedesktop.machine1.Manager.GetMachine", godbus.FlagNoAutoStart, machine).Store(&path)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", client.ErrNoSuchMachine, machine, err)
	}
	obj := conn.Object("org.freedesktop.machine1", path)
	v, err := getProperty(ctx, obj, "org.freedesktop.machine1.Machine.Unit")
	if err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", client.ErrNoSuchMachine, machine, err)
	}
	unit, _ = v.Value().(string)
	if unit == "" {
		return "", "", fmt.Errorf("%w: %s has no unit", client.ErrNoSuchMachine, machine)
	}
	if v, err := getProperty(ctx, obj, "org.freedesktop.machine1.Machine.Service"); err == nil {
		service, _ = v.Value().(string)
	}
	return unit, machinedManager(service), nil
}

// machinedManager turns the service that registered a machine with
// machined into a manager name: systemd-nspawn (systemd 252 registers
// its machines as "systemd-nspawn") is "nspawn", like the other managers'
// short names; other services keep theirs, and one contid would refuse
// is left out.
func machinedManager(service string) string {
	if service == "systemd-nspawn" {
		return "nspawn"
	}
	if registry.ValidateManager(service) != nil {
		return ""
	}
	return service
}
