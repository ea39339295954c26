package dbus

import (
	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// Auditor records contid's own operations in the audit log and the
// journal (docs/DESIGN.md); *journal.Recorder implements it. Every tag
// attempt, granted or refused, goes through it.
type Auditor interface {
	RecordTag(callerPID uint32, callerChain, chain, old contid.Chain, l contid.Labels, tagErr error) error
	RecordCreate(ownerPID uint32, chain contid.Chain, l contid.Labels) error
	RecordDrop(chain contid.Chain, l contid.Labels) error
	RecordDenial(chain contid.Chain, l contid.Labels, pid uint32, operation string, suppressed uint64) error
	RecordDenialsSuppressed(chain contid.Chain, l contid.Labels, n uint64) error
	RecordGrantUse(chain contid.Chain, l contid.Labels, pid uint32, operation string) error
}

// SetAuditor starts recording operations with a; until then nothing is
// recorded (tests, or a daemon whose audit pipeline failed to start).
func (m *Manager) SetAuditor(a Auditor) {
	m.mu.Lock()
	m.auditor = a
	m.mu.Unlock()
}

func (m *Manager) audit(f func(a Auditor) error) {
	m.mu.Lock()
	a := m.auditor
	m.mu.Unlock()
	if a == nil {
		return
	}
	// Said once per outage (journald or audit down), not once per call:
	// a loop of tag calls must not flood the log it cannot write to.
	err := f(a)
	m.mu.Lock()
	report := err != nil && !m.auditFailing
	m.auditFailing = err != nil
	m.mu.Unlock()
	if report {
		m.log(PrioWarning, "Failed to record an operation in the audit log (said once until it works again): %v", err)
	}
}

func (m *Manager) auditGranted(caller registry.Caller, c *registry.Container, isNew bool) {
	callerChain := m.chainOf(caller.Container)
	m.audit(func(a Auditor) error {
		l := labelsOf(c)
		if err := a.RecordTag(caller.PID, callerChain, c.Chain, nil, l, nil); err != nil {
			return err
		}
		if isNew {
			return a.RecordCreate(caller.PID, c.Chain, l)
		}
		return nil
	})
}

func (m *Manager) auditRefused(caller registry.Caller, id uint64, l contid.Labels, err error) {
	var chain contid.Chain
	if id != 0 {
		chain = contid.Chain{contid.ID(id)}
	}
	callerChain := m.chainOf(caller.Container)
	m.audit(func(a Auditor) error { return a.RecordTag(caller.PID, callerChain, chain, nil, l, err) })
}

// labelsOf is what names a recorded container in contid's own records.
func labelsOf(c *registry.Container) contid.Labels {
	return contid.Labels{Name: c.Name, Unit: c.Unit, Manager: c.Manager, Image: c.Image, ManagerID: c.ManagerID, UUID: c.UUID}
}

// requestLabels is what a refused request asked to name its container,
// as the refusal's record shows it. The name goes in as asked, as it
// always has; the other labels only if valid, so that a match on, say,
// AUDIT_CONTAINER_UUID finds only well-formed values. A refused UUID that
// is valid (one a living container holds) is kept: the refusal is then
// found with that container's entries, like a refused explicit ID.
func requestLabels(o registry.Options, unit string) contid.Labels {
	l := contid.Labels{Name: o.Name, Unit: unit}
	if registry.ValidateManager(o.Manager) == nil {
		l.Manager = o.Manager
	}
	if registry.ValidateImage(o.Image) == nil {
		l.Image = o.Image
	}
	if registry.ValidateManagerID(o.ManagerID) == nil {
		l.ManagerID = o.ManagerID
	}
	if registry.ValidateUUID(o.UUID) == nil {
		l.UUID = o.UUID
	}
	return l
}

// chainOf is the full chain of a container, or just its ID when the
// registry has no record of it (yet); nil for no container.
func (m *Manager) chainOf(id contid.ID) contid.Chain {
	if id == contid.Unset {
		return nil
	}
	if c, err := m.cfg.Registry.Get(id); err == nil {
		return c.Chain
	}
	return contid.Chain{id}
}
