package dbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/internal/docker"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// dockerManager is the Manager label of containers dockerd started.
const dockerManager = "docker"

// Backoff between attempts to reach dockerd: it may be absent for good
// (not installed), so retries slow down to the cap.
const (
	dockerRetryMin = time.Second
	dockerRetryMax = time.Minute
)

// FollowDocker names Docker's containers after dockerd's names for them.
// dockerd runs no OCI hooks of contid's, so the name comes from its
// Engine API on socket: the containers running when the stream opens,
// then each container start. A container the kernel autotagged at mkdir
// (AutotagScopes: system.slice/docker-ID.scope) gets its name, image and
// Docker ID; one that was running before contidd first loaded, in a
// cgroup an AutotagScopes pattern matches, is tagged now. When dockerd
// is absent or restarts, FollowDocker says so once and reconnects until
// ctx ends.
func (m *Manager) FollowDocker(ctx context.Context, socket string) {
	cl := docker.New(socket, m.hostProcess)
	retry := dockerRetryMin
	var lastErr string
	for ctx.Err() == nil {
		connected, err := m.followDockerOnce(ctx, cl)
		if ctx.Err() != nil {
			return
		}
		if connected {
			retry = dockerRetryMin
			lastErr = ""
			m.log(PrioNotice, "Lost dockerd's event stream on %s (%v); reconnecting.", socket, err)
		} else if msg := err.Error(); msg != lastErr {
			// Logged once per kind of failure, not per retry.
			lastErr = msg
			if docker.IsAbsent(err) {
				m.log(PrioInfo, "dockerd is not running on %s (%v); its containers are named once it starts.", socket, err)
			} else {
				m.log(PrioWarning, "Cannot follow dockerd on %s: %v", socket, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(retry*2, dockerRetryMax)
	}
}

// followDockerOnce follows one event stream until it ends; connected
// says whether the stream was opened.
func (m *Manager) followDockerOnce(ctx context.Context, cl *docker.Client) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev, err := cl.Events(ctx)
	if err != nil {
		return false, err
	}
	defer ev.Close()
	running, err := cl.Running(ctx)
	if err != nil {
		return false, fmt.Errorf("list running containers: %w", err)
	}
	m.log(PrioInfo, "Following dockerd: %d containers running.", len(running))
	for _, id := range running {
		m.dockerStarted(ctx, cl, id)
	}
	for {
		id, err := ev.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("dockerd closed it")
			}
			return true, err
		}
		m.dockerStarted(ctx, cl, id)
	}
}

// dockerStarted names or tags container id, with machineNew's rules.
func (m *Manager) dockerStarted(ctx context.Context, cl *docker.Client, id string) {
	short := id[:12]
	ct, err := cl.Inspect(ctx, id)
	if err != nil {
		m.log(PrioWarning, "Docker container %s: %v", short, err)
		return
	}
	if !ct.Running {
		return // gone already; its execs were attributed by its cgroup's tag
	}
	own, err := m.cfg.Cgroups.OfPID(uint32(ct.PID))
	if err != nil {
		m.log(PrioWarning, "Docker container %s (%s): cgroup of its init %d: %v", ct.Name, short, ct.PID, err)
		return
	}
	cg, err := docker.ContainerCgroup(own, ct.ID)
	if err != nil {
		m.log(PrioWarning, "Docker container %s (%s): %v", ct.Name, short, err)
		return
	}
	labels := registry.Options{Name: ct.Name, Manager: dockerManager, Image: ct.Image, ManagerID: ct.ID}
	// A label contidd refuses (past its bound, unprintable) is left
	// out, so the rest still names the container.
	if registry.ValidateName(labels.Name) != nil {
		labels.Name = ""
	}
	if registry.ValidateImage(labels.Image) != nil {
		labels.Image = ""
	}
	unit := unitOfCgroup(cg)
	target, err := m.resolveCgroup(cg, unit)
	if err != nil {
		m.log(PrioWarning, "Docker container %s (%s): %v", ct.Name, short, err)
		return
	}
	c, err := m.cfg.Registry.ByCgroupPath(cg)
	if err != nil || c.State != registry.StateActive {
		// The start can be read before the kernel's autotag event; after
		// `docker restart` the path is also an exited record's, of the
		// scope systemd removed before making it again.
		c = m.adoptPending(target)
	}
	if c != nil {
		// dockerd's word fills in what is missing on a container the
		// kernel tagged (no owner), never more: an owner names its
		// containers itself, and a label once given stays.
		if c.OwnerPID != 0 || c.State != registry.StateActive {
			return
		}
		o := registry.Options{Name: c.Name, Manager: c.Manager, Image: c.Image, ManagerID: c.ManagerID}
		if o.Name == "" {
			o.Name = labels.Name
		}
		if o.Manager == "" {
			o.Manager = labels.Manager
		}
		if o.Image == "" {
			o.Image = labels.Image
		}
		if o.ManagerID == "" {
			o.ManagerID = labels.ManagerID
		}
		nc, err := m.cfg.Registry.Name(m.internalCaller(), c.ID, o, unit)
		if err != nil {
			m.log(PrioWarning, "Failed to name container %d after Docker container %s (%s): %v", c.ID, ct.Name, short, err)
			return
		}
		m.metadataChanged(c, nc, "Docker container "+ct.Name+":")
		return
	}
	// Only a cgroup the kernel would have autotagged is tagged on
	// dockerd's word: it existed before contidd loaded. Elsewhere
	// (dockerd's cgroupfs driver, a --cgroup-parent) the cgroup is
	// whatever the caller of dockerd chose.
	if !m.matchesAutotagScope(cg) {
		m.log(PrioNotice, "Docker container %s (%s) runs in %s, which no AutotagScopes pattern matches: not tagged.", ct.Name, short, cg)
		return
	}
	nc, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.Unset, target, labels)
	if err != nil {
		m.log(PrioWarning, "Failed to tag Docker container %s (%s): %v", ct.Name, cg, err)
		return
	}
	m.log(PrioInfo, "Docker container %s (%s) tagged as %s.", ct.Name, cg, nc.Chain)
	m.auditGranted(m.internalCaller(), nc, true)
	m.containerNew(nc)
}

// hostProcess accepts a server that runs in no container: the
// orchestrators contid trusts run untagged on the host.
func (m *Manager) hostProcess(pid int) error {
	if m.cfg.Tracker == nil {
		return nil
	}
	id, err := m.cfg.Tracker.PIDID(uint32(pid))
	switch {
	case errors.Is(err, kernel.ErrNotTagged):
		return nil
	case err != nil:
		return fmt.Errorf("container of pid %d: %w", pid, err)
	}
	return fmt.Errorf("pid %d runs in container %d", pid, id)
}

// matchesAutotagScope reports whether cgroup p is one the kernel autotags
// by an AutotagScopes pattern.
func (m *Manager) matchesAutotagScope(p string) bool {
	for _, s := range m.cfg.AutotagScopes {
		if s.Matches(p) {
			return true
		}
	}
	return false
}
