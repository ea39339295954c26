package dbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// FollowMachines keeps container records in step with machined: machines
// registered under an autotag parent were tagged by the kernel at mkdir
// and get their name and unit here; machines under an autotag parent that
// are not tagged yet (they were running before contidd first loaded) are
// tagged now. It picks up the machines already running, then follows
// MachineNew until ctx ends. Without machined (not installed, or not
// started yet) it says so once and keeps following: the match on
// machined's well-known name delivers its signals once it is activated.
func (m *Manager) FollowMachines(ctx context.Context) error {
	conn := m.systemBus()
	if conn == nil {
		return errors.New("no system bus")
	}
	sigs := make(chan *godbus.Signal, 64)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)
	if err := conn.AddMatchSignalContext(ctx,
		godbus.WithMatchSender("org.freedesktop.machine1"),
		godbus.WithMatchInterface("org.freedesktop.machine1.Manager"),
		godbus.WithMatchObjectPath("/org/freedesktop/machine1")); err != nil {
		return fmt.Errorf("subscribe to machined: %w", err)
	}
	var machines []struct {
		Name, Class, Service string
		Path                 godbus.ObjectPath
	}
	err := conn.Object("org.freedesktop.machine1", "/org/freedesktop/machine1").
		CallWithContext(ctx, "org.freedesktop.machine1.Manager.ListMachines", 0).Store(&machines)
	if err != nil {
		m.machinedOnce.Do(func() {
			m.log(PrioNotice, "systemd-machined is not available (%v); machines it starts later are still followed.", err)
		})
	}
	for _, mc := range machines {
		if mc.Class == "container" || mc.Class == "vm" {
			m.machineNew(ctx, mc.Name)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-sigs:
			if !ok {
				return nil
			}
			if s.Name == "org.freedesktop.machine1.Manager.MachineNew" && len(s.Body) == 2 {
				if name, ok := s.Body[0].(string); ok {
					m.machineNew(ctx, name)
				}
			}
			// MachineRemoved needs nothing here: the cgroup empties and the
			// exit check marks the container exited, with its record kept.
		}
	}
}

// machineLookupTimeout bounds what machineNew asks machined and systemd:
// sd-bus's default method call timeout.
const machineLookupTimeout = 25 * time.Second

func (m *Manager) machineNew(ctx context.Context, name string) {
	if validMachineName(name) != nil {
		return
	}
	// The follower waits for nothing else meanwhile: a machined or
	// systemd that does not answer delays the next machine by this much,
	// not forever.
	ctx, cancel := context.WithTimeout(ctx, machineLookupTimeout)
	defer cancel()
	unit, service, err := m.machineInfo(ctx, name)
	if err != nil {
		m.log(PrioWarning, "Machine %s: %v", name, err)
		return
	}
	cg, err := m.unitCgroup(ctx, unit)
	if err != nil {
		m.log(PrioWarning, "Machine %s: %v", name, err)
		return
	}
	if c, err := m.cfg.Registry.ByCgroupPath(cg); err == nil {
		// machined's word fills in what is missing on a container the
		// kernel tagged (no owner), never more: an owner names its
		// containers itself, and a name once given stays.
		if c.OwnerPID != 0 || c.State != registry.StateActive {
			return
		}
		o := registry.Options{Name: c.Name, Manager: c.Manager}
		if o.Name == "" {
			o.Name = name
		}
		if o.Manager == "" {
			o.Manager = service
		}
		nc, err := m.cfg.Registry.Name(m.internalCaller(), c.ID, o, unit)
		if err != nil {
			m.log(PrioWarning, "Failed to name container %d after machine %s: %v", c.ID, name, err)
			return
		}
		m.metadataChanged(c, nc, "Machine "+name+":")
		return
	}
	// Anyone machined lets register a machine (root, also inside a
	// container) chooses the unit it names, so a machine outside the
	// autotag parents could be any host service: it is not tagged on
	// machined's word. Its orchestrator tags it (TagMachine).
	if !m.underAutotagParent(cg) {
		m.log(PrioNotice, "Machine %s runs in %s, outside the autotag parents: not tagged on machined's announcement alone; tag it with TagMachine.", name, cg)
		return
	}
	target, err := m.resolveCgroup(cg, unit)
	if err != nil {
		m.log(PrioWarning, "Machine %s: %v", name, err)
		return
	}
	c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.Unset, target, registry.Options{Name: name, Manager: service})
	if err != nil {
		m.log(PrioWarning, "Failed to tag machine %s (%s): %v", name, cg, err)
		return
	}
	m.log(PrioInfo, "Machine %s (%s) tagged as %s.", name, cg, c.Chain)
	m.auditGranted(m.internalCaller(), c, true)
	m.containerNew(c)
}

// underAutotagParent reports whether cgroup p lies below one of the
// configured autotag parents.
func (m *Manager) underAutotagParent(p string) bool {
	for _, parent := range m.cfg.AutotagParents {
		if parent != "" && parent != "/" && strings.HasPrefix(p, parent+"/") {
			return true
		}
	}
	return false
}
