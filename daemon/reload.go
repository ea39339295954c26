package daemon

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/config"
	cdbus "github.com/contid/contid/dbus"
)

// reloadable are the settings a reload applies to the running contidd.
// The others shape what contidd set up at start (the kernel layer, the
// registry, the sockets, the audit reader and forwarder) and take effect
// at the next start; a reload says which those are.
var reloadable = map[string]func(cur *config.Config, next config.Config){
	"[Manager] LogLevel":     func(cur *config.Config, next config.Config) { cur.LogLevel = next.LogLevel },
	"[Audit] EnableAuditing": func(cur *config.Config, next config.Config) { cur.EnableAuditing = next.EnableAuditing },
	"[Audit] BacklogLimit":   func(cur *config.Config, next config.Config) { cur.BacklogLimit = next.BacklogLimit },
}

// reloadState is what a reload compares with and whom it tells.
type reloadState struct {
	// current is the configuration in effect: the start's, with the
	// reloadable settings of each reload since.
	current config.Config
	nextID  int
	hooks   map[int]func(prev, next config.Config)
}

// onReload registers f to apply the reloadable settings it owns; the
// returned function unregisters it, before what f uses goes away.
func (d *Daemon) onReload(f func(prev, next config.Config)) (remove func()) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.reload.hooks == nil {
		d.reload.hooks = map[int]func(prev, next config.Config){}
	}
	id := d.reload.nextID
	d.reload.nextID++
	d.reload.hooks[id] = f
	return func() {
		d.reloadMu.Lock()
		defer d.reloadMu.Unlock()
		delete(d.reload.hooks, id)
	}
}

// watchHangup reloads the configuration on each SIGHUP (systemctl reload
// sends one through the unit's ExecReload=). hup is subscribed before
// READY=1, so a reload that comes early is not taken for a kill.
func (d *Daemon) watchHangup(ctx context.Context, hup chan os.Signal, load func() (config.Config, error)) error {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			// systemd 252 (Type=notify) holds `systemctl reload` in
			// "reloading" from RELOADING=1 to READY=1; later versions
			// also want the time the reload began.
			_, _ = sddaemon.SdNotify(false, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
			d.reloadConfig(load)
			_, _ = sddaemon.SdNotify(false, "READY=1")
		}
	}
}

// reloadConfig reads the configuration again, applies what can change
// at run time and says what changed and what waits for a restart. A
// configuration that does not load changes nothing.
func (d *Daemon) reloadConfig(load func() (config.Config, error)) {
	next, err := load()
	if err != nil {
		d.Log.Logf(cdbus.PrioErr, "Reload failed, the running configuration stays: %v", err)
		return
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	prev := d.reload.current
	changes := config.Changes(prev, next)
	if len(changes) == 0 {
		d.Log.Logf(cdbus.PrioInfo, "Reloaded the configuration: nothing changed.")
		return
	}
	cur := prev
	var applied, pending []string
	for _, c := range changes {
		if set, ok := reloadable[c.Key]; ok {
			set(&cur, next)
			applied = append(applied, c.String())
		} else {
			pending = append(pending, c.String())
		}
	}
	d.Log.SetLevel(config.LogLevels[cur.LogLevel])
	for _, f := range d.reload.hooks {
		f(prev, cur)
	}
	d.reload.current = cur
	msg := "Reloaded the configuration."
	if len(applied) > 0 {
		msg += " Applied: " + strings.Join(applied, ", ") + "."
	}
	if len(pending) > 0 {
		msg += " Takes effect after a restart of contidd: " + strings.Join(pending, ", ") + "."
	}
	d.Log.Logf(cdbus.PrioNotice, "%s", msg)
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// hangups subscribes to SIGHUP.
func hangups() chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch
}
