// Command contidd is contid's daemon: it loads the kernel layer, keeps the
// container registry and serves org.contid1 on the system bus and on
// /run/contid/bus. See docs/DESIGN.md and units/contid.conf.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/contid/contid/config"
	"github.com/contid/contid/daemon"
	"github.com/contid/contid/kernel/audit"
)

// Exit statuses the unit does not restart on (RestartPreventExitStatus=):
// a restart cannot mend a command line or a configuration. They are the
// BSD sysexits codes, not 2: Go exits with 2 after a panic and after the
// SIGABRT of systemd's watchdog, and those must restart.
const (
	exitUsage  = 64 // EX_USAGE
	exitConfig = 78 // EX_CONFIG
)

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:]))
}

// gcPercent is contidd's GOGC. Its heap is mostly long-lived registry
// records plus short bursts of garbage per call; at Go's default of 100
// the heap may grow to twice the live data before a collection, and that
// slack is much of the RSS a busy host sees. At 50 the slack halves (the
// bench's API phase with 10,000 containers: 35 MB RSS at 100, 28 MB at
// 50) for collections twice as often, which on a heap this small cost far
// less than the system calls of one request.
// No memory limit is set: with a large registry (the default allows
// 65,536 containers) a fixed limit below the live heap would make the
// collector run back to back.
const gcPercent = 50

// tuneGC applies gcPercent unless the administrator set GOGC in the
// unit's environment (a GOMEMLIMIT there works on top of either).
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return
	}
	debug.SetGCPercent(gcPercent)
}

func run(args []string) int {
	fs := flag.NewFlagSet("contidd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: contidd [OPTIONS]\n\nThe contid daemon: audit container IDs for systemd hosts.\n\nOptions (override %s):\n", config.DefaultPath)
		fs.PrintDefaults()
	}
	var (
		confPath    = fs.String("config", config.DefaultPath, "configuration `file`")
		busAddress  = fs.String("bus-address", "", "system bus `address` (default: $DBUS_SYSTEM_BUS_ADDRESS or the standard socket)")
		noBus       = fs.Bool("no-bus", false, "do not use the system bus; serve the peer-to-peer socket only")
		journalSock = fs.String("journal-socket", "", "journald native `socket` for audit events (default /run/systemd/journal/socket)")
		socket      = fs.String("socket", "", "peer-to-peer socket `path` (Socket=; \"none\" disables it)")
		stateDir    = fs.String("state-directory", "", "state `dir` (StateDirectory=)")
		pinDir      = fs.String("pin-directory", "", "bpffs pin `dir` (PinDirectory=)")
		mode        = fs.String("mode", "", "auto or tracking (Mode=)")
		logLevel    = fs.String("log-level", "", "lowest syslog `level` logged (LogLevel=)")
		parents     = fs.String("autotag-parents", "", "space-separated cgroup `paths` (AutotagParents=; \"none\" for none)")
		version     = fs.Bool("version", false, "print the version and exit")
		dropExempt  = fs.Bool("drop-audit-exemption", false, "remove the audit rule by which a contidd exempted its own system calls, and exit (the unit's ExecStopPost=)")
		dropRules   = fs.Bool("drop-audit-rules", false, "remove the audit rules keyed \"contid\" (contid.rules) from the kernel, and exit (the package's removal)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "contidd: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *version {
		fmt.Println("contidd", config.Version)
		return 0
	}
	if *dropExempt {
		return dropAuditExemption()
	}
	if *dropRules {
		return dropAuditRules()
	}
	flags := overrides{stateDir: *stateDir, pinDir: *pinDir, logLevel: *logLevel, mode: *mode, socket: *socket, parents: *parents}
	load := func() (config.Config, error) { return loadConfig(*confPath, flags) }
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "<3>contidd: %v\n", err)
		// A file that could not be read (EIO, say) may read at the next
		// start; a configuration that says something invalid will not.
		var unread *os.PathError
		if errors.As(err, &unread) {
			return 1
		}
		return exitConfig
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, daemon.Options{
		Config:     cfg,
		BusAddress: *busAddress,
		NoBus:      *noBus,
		Extra:      []func(context.Context, *daemon.Daemon) error{daemon.AuditPipeline(*journalSock)},
		Reload:     load,
	}); err != nil {
		fmt.Fprintf(os.Stderr, "<3>contidd: %v\n", err)
		return 1
	}
	return 0
}

// overrides are the command-line options that override contid.conf.
type overrides struct {
	stateDir, pinDir, logLevel, mode, socket, parents string
}

// errBadFlag marks a configuration the command line made invalid.
var errBadFlag = errors.New("invalid command-line option")

// loadConfig reads contid.conf and its drop-ins and applies the
// command-line overrides on top, at start and at each reload alike.
func loadConfig(confPath string, o overrides) (config.Config, error) {
	cfg, err := config.Load(confPath)
	if err != nil {
		return cfg, err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.StateDirectory, o.stateDir)
	set(&cfg.PinDirectory, o.pinDir)
	set(&cfg.LogLevel, o.logLevel)
	if o.mode != "" {
		cfg.Mode = config.Mode(o.mode)
	}
	switch o.socket {
	case "":
	case "none":
		cfg.Socket = ""
	default:
		cfg.Socket = o.socket
	}
	switch o.parents {
	case "":
	case "none":
		cfg.AutotagParents = nil
	default:
		cfg.AutotagParents = nil
		for _, p := range strings.Fields(o.parents) {
			cfg.AutotagParents = append(cfg.AutotagParents, "/"+strings.Trim(path.Clean("/"+p), "/"))
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", errBadFlag, err)
	}
	return cfg, nil
}

// dropAuditRules takes contid.rules' rules out of the kernel when the
// package is removed: left there, every exec on the host would still be
// audited for a reader that is gone.
func dropAuditRules() int {
	ctl, err := audit.NewControl()
	if err != nil {
		fmt.Fprintf(os.Stderr, "<4>contidd: %v\n", err)
		return 1
	}
	defer ctl.Close()
	if err := ctl.DropRules(audit.RulesKey); err != nil {
		fmt.Fprintf(os.Stderr, "<4>contidd: %v\n", err)
		return 1
	}
	return 0
}

// dropAuditExemption runs after contidd stopped, however it stopped, so
// that its PID's audit exemption does not outlive it.
func dropAuditExemption() int {
	ctl, err := audit.NewControl()
	if err != nil {
		fmt.Fprintf(os.Stderr, "<4>contidd: %v\n", err)
		return 1
	}
	defer ctl.Close()
	if err := ctl.DropExemptions(); err != nil {
		fmt.Fprintf(os.Stderr, "<4>contidd: %v\n", err)
		return 1
	}
	return 0
}
