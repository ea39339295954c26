package dbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sync"
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
	overlong := 0
	for {
		e, err := ev.Next()
		if n := ev.Overlong(); n > 0 && overlong == 0 {
			// Once a stream: each event of such a container is as long.
			m.log(PrioWarning, "Skipped an event of dockerd's longer than its bound: a container's labels are too big to read; it is named at its start only if its inspect is within bounds.")
			overlong = n
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("dockerd closed it")
			}
			return true, err
		}
		switch e.Action {
		case docker.ActionCreate:
			// The image comes with the start's inspect (Config.Image):
			// the event's "image" can be a label of the container's.
			m.dockerLabels.remember(e.ID, dockerOptions(e.ID, e.Name, ""))
		case docker.ActionRename:
			m.dockerLabels.rename(e.ID, e.Name)
		case docker.ActionStart:
			m.dockerStarted(ctx, cl, e.ID)
		case docker.ActionDestroy:
			m.dockerLabels.forget(e.ID)
		}
	}
}

// dockerOptions are the labels of a Docker container. A label contidd
// refuses (past its bound, unprintable) is left out, so the rest still
// names the container.
func dockerOptions(id, name, image string) registry.Options {
	o := registry.Options{Name: name, Manager: dockerManager, Image: image, ManagerID: id}
	if registry.ValidateName(o.Name) != nil {
		o.Name = ""
	}
	if registry.ValidateImage(o.Image) != nil {
		o.Image = ""
	}
	return o
}

// maxDockerLabels bounds the names kept for containers dockerd created
// and has not destroyed; beyond it the oldest go, and their containers
// are named at start instead, a moment after their first exec.
const maxDockerLabels = 4096

// dockerLabels keeps what dockerd said of each container it created, so
// that the kernel's autotag of the container's scope, which happens when
// the container starts, before its first exec and before dockerd's start
// event, can name it at once: the container's first entries then carry
// its name. `docker restart` makes the scope again, and the container
// keeps its name through it, so the labels stay until dockerd destroys
// the container.
type dockerLabels struct {
	mu    sync.Mutex
	byID  map[string]registry.Options
	order []string
}

func (d *dockerLabels) remember(id string, o registry.Options) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byID == nil {
		d.byID = map[string]registry.Options{}
	}
	if _, ok := d.byID[id]; !ok {
		d.order = append(d.order, id)
	}
	d.byID[id] = o
	for len(d.order) > maxDockerLabels {
		delete(d.byID, d.order[0])
		d.order = d.order[1:]
	}
}

// rename gives a kept container its new name, so that the scope `docker
// restart` makes after `docker rename` is named as dockerd now names it.
func (d *dockerLabels) rename(id, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.byID[id]
	if !ok {
		return // named at its start, from its inspect
	}
	o.Name = name
	if registry.ValidateName(o.Name) != nil {
		o.Name = ""
	}
	d.byID[id] = o
}

func (d *dockerLabels) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.byID[id]; !ok {
		return
	}
	delete(d.byID, id)
	d.order = slices.DeleteFunc(d.order, func(s string) bool { return s == id })
}

func (d *dockerLabels) lookup(id string) (registry.Options, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.byID[id]
	return o, ok
}

// nameFromDocker names a container the kernel has just autotagged in a
// cgroup an AutotagScopes pattern matches, when dockerd created a
// container of the ID the cgroup's name holds: Docker's systemd driver
// calls the scope docker-<ID>.scope. Only labels the container lacks are
// set, as dockerStarted does.
func (m *Manager) nameFromDocker(c *registry.Container, cgroup string) *registry.Container {
	id := m.dockerIDOfScope(cgroup)
	if id == "" || c.OwnerPID != 0 || c.Name != "" {
		return c
	}
	o, ok := m.dockerLabels.lookup(id)
	if !ok {
		return c
	}
	nc, err := m.cfg.Registry.Name(m.internalCaller(), c.ID, fillLabels(c, o), c.Unit)
	if err != nil {
		m.log(PrioWarning, "Failed to name container %d after Docker container %s (%s): %v", c.ID, o.Name, id[:12], err)
		return c
	}
	return nc
}

// fillLabels is c's labels with what c lacks taken from o: dockerd's
// word never replaces a label a container already has.
func fillLabels(c *registry.Container, o registry.Options) registry.Options {
	return registry.Options{
		Name:      cmp.Or(c.Name, o.Name),
		Manager:   cmp.Or(c.Manager, o.Manager),
		Image:     cmp.Or(c.Image, o.Image),
		ManagerID: cmp.Or(c.ManagerID, o.ManagerID),
	}
}

// dockerIDOfScope is the Docker ID in the name of a cgroup an
// AutotagScopes pattern matches, or "".
func (m *Manager) dockerIDOfScope(cgroup string) string {
	name := path.Base(cgroup)
	for _, s := range m.cfg.AutotagScopes {
		if s.Matches(cgroup) {
			if id := name[len(s.Prefix) : len(name)-len(s.Suffix)]; docker.ValidID(id) {
				return id
			}
		}
	}
	return ""
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
	labels := dockerOptions(ct.ID, ct.Name, ct.Image)
	m.dockerLabels.remember(ct.ID, labels)
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
		nc, err := m.cfg.Registry.Name(m.internalCaller(), c.ID, fillLabels(c, labels), unit)
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
