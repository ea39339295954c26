// Package daemon runs contidd: configuration, kernel load, registry, the
// D-Bus API on both transports, and the event loops, with systemd's
// readiness, status and watchdog protocol. cmd/contidd only parses flags
// and calls Run.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/config"
	cdbus "github.com/contid/contid/dbus"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/procstat"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// Options are what the command line adds to the configuration file.
type Options struct {
	Config config.Config
	// BusAddress overrides the system bus address ("" = default).
	BusAddress string
	// NoBus runs without the system bus (peer-to-peer socket only).
	NoBus bool
	// Extra goroutines started after the core is up; the audit/journal
	// pipeline plugs in here. READY=1 waits until each has called SetUp
	// or returned. A returned error other than context.Canceled stops
	// contidd.
	Extra []func(ctx context.Context, d *Daemon) error
	// Reload reads the configuration again, as it was read for Config
	// (file, drop-ins, then the command line); with it, SIGHUP reloads.
	Reload func() (config.Config, error)
}

// Daemon is a running contidd, as seen by the goroutines in Options.Extra.
type Daemon struct {
	Config   config.Config
	Tracker  *kernel.BPF
	Registry *registry.Registry
	Manager  *cdbus.Manager
	Log      *Logger
	// AuditSocket is the unicast audit socket an earlier contidd left in
	// systemd's file descriptor store, or nil.
	AuditSocket *os.File
	// AuditSpool is the audit spool an earlier contidd left in the store.
	AuditSpool *os.File

	progress *progress
	// positionWarned: a failed save of the audit position was logged.
	positionWarned atomic.Bool
	reloadMu       sync.Mutex
	reload         reloadState
	wg             sync.WaitGroup
	errCh          chan error
}

// Go runs f until ctx ends; its failure stops the daemon.
func (d *Daemon) Go(ctx context.Context, name string, f func(ctx context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			select {
			case d.errCh <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// cgroups adapts the kernel layer's cgroup helpers to dbus.Cgroups.
type cgroups struct{ root string }

func (c cgroups) Root() string                       { return c.root }
func (c cgroups) ID(rel string) (uint64, error)      { return kernel.CgroupIDAt(c.root, rel) }
func (c cgroups) PathByID(id uint64) (string, error) { return kernel.CgroupPathByID(id) }
func (c cgroups) OfPID(pid uint32) (string, error)   { return kernel.CgroupOfPID(int(pid)) }

// ownerAlive says whether the process that created an ID still runs: the
// PID exists and has the same start time (so a reused PID is not taken
// for the owner).
func ownerAlive(pid uint32, start uint64) bool {
	if pid == 0 {
		return false
	}
	s, err := procstat.StartTicks(int(pid))
	return err == nil && s == start
}

// logEnforceExceptions says which guards the configuration switched off:
// an administrator reading why a container could load a module should
// not have to find the drop-in that allowed it.
func logEnforceExceptions(log *Logger, cfg config.Config) {
	if cfg.AllowBPF {
		log.Logf(cdbus.PrioNotice, "Tagged processes may load BPF programs ([Enforce] AllowBPF=yes).")
	}
	if cfg.AllowModules {
		log.Logf(cdbus.PrioNotice, "Tagged processes may load kernel modules ([Enforce] AllowModules=yes).")
	}
	if cfg.DenialRecordBurst == 0 || cfg.DenialRecordRate == 0 {
		// Not an exception to a guard, but the shield of every other
		// container's events against one container's flood.
		log.Logf(cdbus.PrioNotice, "Every denial is recorded, with no budget per container ([Enforce] DenialRecordBurst=%d, DenialRecordRate=%d): one container looping a refused call can fill the kernel's event buffer.", cfg.DenialRecordBurst, cfg.DenialRecordRate)
	}
}

// Run runs contidd until ctx is cancelled (SIGTERM) or a core part fails.
// On return the pinned maps and links stay: tags keep being enforced
// while contidd is down.
func Run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	log := NewLogger(config.LogLevels[cfg.LogLevel])
	notify := func(state string) { _, _ = sddaemon.SdNotify(false, state) }
	notify("STATUS=Loading the kernel programs...")

	root, err := kernel.Cgroup2Root()
	if err != nil {
		return fmt.Errorf("find the cgroup2 hierarchy: %w", err)
	}
	bpf, err := kernel.Load(kernel.Options{
		PinDir:       cfg.PinDirectory,
		Mode:         string(cfg.Mode),
		MaxDepth:     cfg.MaxDepth,
		AllowBPF:     cfg.AllowBPF,
		AllowModules: cfg.AllowModules,
		DenialBurst:  cfg.DenialRecordBurst,
		DenialRate:   cfg.DenialRecordRate,
	})
	if err != nil {
		return fmt.Errorf("load the kernel layer: %w", err)
	}
	defer bpf.Close()
	mode, reason := bpf.Enforcement()
	log.Logf(cdbus.PrioInfo, "Kernel layer live in %s mode: %s", mode, reason)
	if maps, links := bpf.Adopted(); maps > 0 || links > 0 {
		// Someone hid the pins (a mount over the pin directory) while
		// contid's programs ran on: the administrator should know.
		log.Logf(cdbus.PrioWarning, "The pins in %s were missing while contid's programs were still loaded: re-adopted %d maps and %d links by ID and pinned them again.", cfg.PinDirectory, maps, links)
	}
	if replaced := bpf.Replaced(); len(replaced) > 0 {
		log.Logf(cdbus.PrioNotice, "Replaced the pinned maps %s, of an earlier build's shape, with this build's, and every link with one running this build's programs.", strings.Join(replaced, ", "))
	}
	if mode == contid.ModeEnforcing {
		logEnforceExceptions(log, cfg)
	}

	if err := os.MkdirAll(cfg.StateDirectory, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := bpf.ProtectDirectory(cfg.StateDirectory); err != nil {
		return err
	}
	own, err := kernel.CgroupOfPID(os.Getpid())
	if err != nil {
		return fmt.Errorf("read contidd's own cgroup: %w", err)
	}
	reg, err := registry.Open(cfg.StateDirectory, bpf, registry.Config{
		MaxDepth:      cfg.MaxDepth,
		MaxContainers: cfg.MaxContainers,
		KeepExited:    cfg.KeepExited,
		OwnerAlive:    ownerAlive,
		Logf:          func(f string, a ...any) { log.Logf(cdbus.PrioWarning, f, a...) },
		// contidd's own cgroup (a unit's is fixed for its life) is
		// never tagged.
		OwnCgroup: own,
	})
	if err != nil {
		return fmt.Errorf("open the registry in %s: %w", cfg.StateDirectory, err)
	}
	defer reg.Close()

	setAutotagParents(bpf, cfg.AutotagParents, log)
	setAutotagScopes(bpf, cfg.AutotagScopes, log)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &Daemon{Config: cfg, Tracker: bpf, Registry: reg, Log: log, errCh: make(chan error, 1), progress: newProgress(watchdogInterval())}
	d.reload.current = cfg
	d.Manager = cdbus.NewManager(cdbus.Config{
		Registry: reg, Tracker: bpf, Cgroups: cgroups{root}, Version: config.Version, Logf: log.Logf,
		AutotagParents: cfg.AutotagParents, AutotagScopes: cfg.AutotagScopes,
	})
	if err := d.Manager.Reconcile(); err != nil {
		log.Logf(cdbus.PrioWarning, "Startup reconciliation failed: %v", err)
	}

	// Descriptors from systemd: contidd.socket's listener, and what an
	// earlier contidd left in the file descriptor store.
	passed := activation.FilesWithNames()
	if s := passed[auditSocketName]; len(s) > 0 {
		d.AuditSocket = s[0]
		for _, extra := range s[1:] {
			extra.Close()
		}
		delete(passed, auditSocketName)
	}
	if s := passed[auditSpoolName]; len(s) > 0 {
		d.AuditSpool = s[0]
		for _, extra := range s[1:] {
			extra.Close()
		}
		delete(passed, auditSpoolName)
	}
	// The peer-to-peer endpoint: systemd's socket if activated, else ours.
	ln, err := p2pListener(cfg.Socket, passed)
	if err != nil {
		return err
	}
	if ln != nil {
		d.Go(ctx, "peer-to-peer endpoint", func(ctx context.Context) error { return d.Manager.ServeP2P(ctx, ln) })
		// The probe's calls go through the same endpoint and router as
		// every client's, whichever transport that client uses. Without
		// a watchdog nobody asks for its beats, and it stays off.
		if watchdogInterval() > 0 {
			probed := d.progress.loop("D-Bus loop")
			d.Go(ctx, "D-Bus probe", func(ctx context.Context) error {
				return probeBus(ctx, ln.Addr().String(), d.progress.beatEvery(), probed)
			})
		}
	}

	busState := "no system bus"
	if opts.NoBus {
		busState = "system bus disabled"
		log.Logf(cdbus.PrioNotice, "Running without the system bus (--no-bus); the API is served on %s only.", cfg.Socket)
	} else {
		conn, err := d.Manager.ServeBus(ctx, opts.BusAddress)
		switch {
		case errors.Is(err, cdbus.ErrNameTaken):
			return err
		case err != nil:
			log.Logf(cdbus.PrioWarning, "No system bus (%v); the API is served on %s only, and units and machines cannot be resolved. Retrying in the background.", err, cfg.Socket)
		default:
			busState = "owns " + client.BusName
		}
		d.Go(ctx, "system bus", func(ctx context.Context) error { return keepBus(ctx, d, opts.BusAddress, conn) })
	}

	d.Go(ctx, "manager", func(ctx context.Context) error { d.Manager.Run(ctx); return nil })
	if cfg.DockerSocket != "" {
		d.Go(ctx, "docker", func(ctx context.Context) error { d.Manager.FollowDocker(ctx, cfg.DockerSocket); return nil })
	}
	kernelBeat := d.progress.loop("kernel event loop")
	d.Go(ctx, "kernel events", func(ctx context.Context) error {
		return kernelEvents(ctx, bpf, d.Manager, log, kernelBeat, d.progress.beatEvery())
	})
	var setUp sync.WaitGroup
	for _, f := range opts.Extra {
		setUp.Add(1)
		done := sync.OnceFunc(setUp.Done)
		d.Go(context.WithValue(ctx, setUpKey{}, done), "extension", func(ctx context.Context) error {
			defer done()
			return f(ctx, d)
		})
	}
	d.Go(ctx, "watchdog", func(ctx context.Context) error { return watchdog(ctx, d.progress, log) })
	d.Go(ctx, "status", func(ctx context.Context) error {
		statusUpdates(ctx, func() string {
			state := busState
			if !opts.NoBus {
				state = "no system bus"
				if d.Manager.OnBus() {
					state = "owns " + client.BusName
				}
			}
			return fmt.Sprintf("%s mode, %s, %d containers", mode, state, reg.Active())
		})
		return nil
	})

	if opts.Reload != nil {
		hup := hangups()
		d.Go(ctx, "reload", func(ctx context.Context) error { return d.watchHangup(ctx, hup, opts.Reload) })
	}

	waitSetUp(&setUp, extensionSetUpTimeout, log)
	notify("READY=1\nSTATUS=" + fmt.Sprintf("%s mode, %s, %d containers", mode, busState, reg.Active()))
	log.Logf(cdbus.PrioInfo, "contidd %s ready: %s mode, %s, peer-to-peer on %s.", config.Version, mode, busState, cfg.Socket)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-d.errCh:
		log.Logf(cdbus.PrioErr, "Stopping: %v", runErr)
	}
	notify("STOPPING=1\nSTATUS=Shutting down; pinned tags stay enforced.")
	cancel()
	if ln != nil {
		ln.Close()
	}
	d.wg.Wait()
	log.Logf(cdbus.PrioInfo, "contidd stopped; the kernel keeps enforcing the pinned tags.")
	return runErr
}

// keepBus follows machined on the current bus connection and reconnects
// when the connection is lost (dbus-daemon restarted) or was never made,
// so contidd regains its name without a restart of its own.
func keepBus(ctx context.Context, d *Daemon, address string, conn *godbus.Conn) error {
	const retry = 5 * time.Second
	for {
		if conn != nil {
			fctx, cancel := context.WithCancel(ctx)
			go func() {
				if err := d.Manager.FollowMachines(fctx); err != nil {
					d.Log.Logf(cdbus.PrioNotice, "Not following machined: %v", err)
				}
			}()
			select {
			case <-ctx.Done():
				cancel()
				d.Manager.LeaveBus(conn)
				conn.Close()
				return nil
			case <-conn.Context().Done():
				cancel()
				d.Log.Logf(cdbus.PrioWarning, "Lost the system bus; reconnecting.")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
		var err error
		conn, err = d.Manager.ServeBus(ctx, address)
		if err != nil {
			conn = nil
			continue
		}
		d.Log.Logf(cdbus.PrioInfo, "Connected to the system bus; serving %s.", client.BusName)
	}
}

// p2pListener takes the socket systemd passed (contidd.socket) or listens
// on path itself; "" disables the endpoint.
func p2pListener(path string, passed map[string][]*os.File) (*net.UnixListener, error) {
	var found *net.UnixListener
	for _, files := range passed {
		for _, f := range files {
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				continue
			}
			if ul, ok := l.(*net.UnixListener); ok && found == nil {
				found = ul
			} else {
				l.Close()
			}
		}
	}
	if found != nil {
		return found, nil
	}
	if path == "" {
		return nil, nil
	}
	return cdbus.ListenP2P(path)
}

func setAutotagParents(bpf *kernel.BPF, parents []string, log *Logger) {
	var ids []uint64
	for _, p := range parents {
		id, err := kernel.CgroupID(p)
		if err != nil {
			log.Logf(cdbus.PrioNotice, "Autotag parent %s does not exist (yet); its containers are tagged when machined announces them.", p)
			continue
		}
		ids = append(ids, id)
	}
	if err := bpf.SetAutotagParents(ids); err != nil {
		log.Logf(cdbus.PrioWarning, "Failed to set the autotag parents: %v", err)
	}
}

func setAutotagScopes(bpf *kernel.BPF, patterns []contid.ScopePattern, log *Logger) {
	byParent := map[uint64][]contid.ScopePattern{}
	for _, p := range patterns {
		id, err := kernel.CgroupID(p.Parent)
		if err != nil {
			log.Logf(cdbus.PrioNotice, "Autotag scope %s: its parent does not exist; its containers are not tagged at creation.", p)
			continue
		}
		byParent[id] = append(byParent[id], p)
	}
	if err := bpf.SetAutotagScopes(byParent); err != nil {
		log.Logf(cdbus.PrioWarning, "Failed to set the autotag scopes: %v", err)
	}
}

func kernelEvents(ctx context.Context, t *kernel.BPF, m *cdbus.Manager, log *Logger, h *heartbeat, beatEvery time.Duration) error {
	for {
		h.beat()
		ev, ok, err := readEventOrTick(ctx, t, beatEvery)
		if err == nil && !ok {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Logf(cdbus.PrioWarning, "Reading kernel events failed: %v", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		m.HandleKernelEvent(ev)
	}
}

// statusUpdates keeps `systemctl status contidd` current: a STATUS= line
// whenever the summary changes, checked every few seconds.
func statusUpdates(ctx context.Context, summary func() string) {
	last := summary()
	every(ctx, 5*time.Second, func() {
		if s := summary(); s != last {
			last = s
			_, _ = sddaemon.SdNotify(false, "STATUS="+s)
		}
	})
}

// every calls f at each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// extensionSetUpTimeout bounds how long READY=1 waits for the extensions'
// start-up (SetUp); beyond it contidd is ready without them and says so.
const extensionSetUpTimeout = 30 * time.Second

type setUpKey struct{}

// SetUp tells Run that the extension running with ctx has finished its
// start-up. READY=1 waits for it: what systemd starts after contidd (a
// container manager's first container) must find the audit reader
// already joined to the kernel's stream, or its first calls go unseen.
// An extension that returns has finished its start-up too.
func SetUp(ctx context.Context) {
	if done, ok := ctx.Value(setUpKey{}).(func()); ok {
		done()
	}
}

func waitSetUp(wg *sync.WaitGroup, limit time.Duration, log *Logger) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
		log.Logf(cdbus.PrioWarning, "The audit pipeline did not finish starting within %s; contidd is ready without waiting for it, and events until it does are not attributed.", limit)
	}
}
