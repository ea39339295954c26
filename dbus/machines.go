package dbus

import (
	"context"
	"errors"
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// FollowMachines keeps container records in step with machined: machines
// registered under an autotag parent were tagged by the kernel at mkdir
// and get their name and unit here; other machines are tagged now. It
// picks up the machines already running, then follows MachineNew until
// ctx ends. Without machined it says so once and returns.
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

func (m *Manager) machineNew(ctx context.Context, name string) {
	if validMachineName(name) != nil {
		return
	}
	unit, err := m.machineUnit(ctx, name)
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
		if c.Name == "" || c.Unit == "" {
			if err := m.cfg.Registry.SetMetadata(c.ID, name, unit); err != nil {
				m.log(PrioWarning, "Failed to name container %d after machine %s: %v", c.ID, name, err)
			} else {
				m.emit(ContainerPath(c.ID), ifaceProperties, "PropertiesChanged", ContainerInterface,
					map[string]godbus.Variant{"Name": godbus.MakeVariant(name), "Unit": godbus.MakeVariant(unit)}, []string{})
			}
		}
		return
	}
	target, err := m.resolveCgroup(cg, unit)
	if err != nil {
		m.log(PrioWarning, "Machine %s: %v", name, err)
		return
	}
	c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.Unset, target, registry.Options{Name: name})
	if err != nil {
		m.log(PrioWarning, "Failed to tag machine %s (%s): %v", name, cg, err)
		return
	}
	m.log(PrioInfo, "Machine %s (%s) tagged as %s.", name, cg, c.Chain)
	m.auditGranted(m.internalCaller(), c, true)
	m.containerNew(c)
}
