// Package config reads contidd's configuration, /etc/contid/contid.conf,
// a systemd-style INI file with [Manager], [Audit], [Registry] and
// [Enforce] sections.
//
// Every key has a default so that a missing file is a valid configuration;
// units/contid.conf documents them. Unknown sections and keys are errors,
// because a silently ignored typo in a security daemon's config is worse
// than a refusal to start.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/contid/contid"
)

// Version is set at build time by the Makefile (-X).
var Version = "0.1.0"

// DefaultPath is where contidd looks for its configuration.
const DefaultPath = "/etc/contid/contid.conf"

// ErrSyntax is wrapped by every parse error, with file and line.
var ErrSyntax = errors.New("config syntax error")

// Mode selects which kernel programs contidd loads.
type Mode string

const (
	// ModeAuto picks enforcing when the BPF LSM is usable, else tracking.
	ModeAuto Mode = "auto"
	// ModeTracking never loads the LSM programs.
	ModeTracking Mode = "tracking"
)

// AuditSocket selects how contidd receives the kernel's audit records.
type AuditSocket string

const (
	// AuditSocketAuto is unicast when no other audit daemon is
	// registered, else multicast.
	AuditSocketAuto AuditSocket = "auto"
	// AuditSocketUnicast makes contidd the kernel's audit daemon.
	AuditSocketUnicast AuditSocket = "unicast"
	// AuditSocketMulticast reads the multicast group beside any daemon.
	AuditSocketMulticast AuditSocket = "multicast"
)

// Config is the whole configuration.
type Config struct {
	// [Manager]
	AutotagParents []string
	AutotagScopes  []contid.ScopePattern
	MaxDepth       int
	MaxContainers  int
	StateDirectory string
	PinDirectory   string
	Socket         string
	DockerSocket   string
	Mode           Mode
	LogLevel       string

	// [Audit]
	AuditSocket     AuditSocket
	BacklogWaitTime uint32
	WriteUntagged   bool
	LoadRules       bool
	RulesFile       string
	BacklogLimit    uint32
	EnableAuditing  bool

	// [Registry]
	KeepExited int

	// [Enforce]
	AllowBPF     bool
	AllowModules bool
	// DenialRecordBurst and DenialRecordRate are each container's budget
	// of denials recorded one by one: this many at once, this many more
	// per second; past it they are counted (kernel/bpf/denial.c). Either
	// 0 records every denial.
	DenialRecordBurst uint32
	DenialRecordRate  uint32
}

// DockerScopes is where Docker's systemd cgroup driver puts each
// container: beside the host's services, so only the name tells it apart.
var DockerScopes = contid.ScopePattern{Parent: "/system.slice", Prefix: "docker-", Suffix: ".scope"}

// Default returns the configuration used when the file is absent.
func Default() Config {
	return Config{
		AutotagParents:  []string{"/machine.slice"},
		AutotagScopes:   []contid.ScopePattern{DockerScopes},
		MaxDepth:        contid.MaxDepth,
		MaxContainers:   65536,
		StateDirectory:  "/var/lib/contid",
		PinDirectory:    "/sys/fs/bpf/contid",
		Socket:          "/run/contid/bus",
		DockerSocket:    "/run/docker.sock",
		Mode:            ModeAuto,
		LogLevel:        "info",
		AuditSocket:     AuditSocketAuto,
		BacklogWaitTime: 60000,
		WriteUntagged:   false,
		LoadRules:       true,
		RulesFile:       "/usr/share/contid/contid.rules",
		BacklogLimit:    8192,
		EnableAuditing:  true,
		KeepExited:      10000,
		AllowBPF:        false,
		AllowModules:    false,
		// A burst shows what a container tried, a few dozen entries;
		// 64 at about 210 bytes each is 13 KiB of the 1 MiB ring buffer,
		// so thousands of flooding containers fit before other events
		// are lost. 64 a second keeps a busy container's refusals one by
		// one (no legitimate workload is refused that often) while a
		// loop's cost in journal entries stays a few dozen a second.
		DenialRecordBurst: 64,
		DenialRecordRate:  64,
	}
}

// LogLevels maps the LogLevel names to syslog priorities.
var LogLevels = map[string]int{
	"emerg": 0, "alert": 1, "crit": 2, "err": 3,
	"warning": 4, "notice": 5, "info": 6, "debug": 7,
}

// Load reads the file at p on top of the defaults, then the drop-ins of
// DropInDir(p) (see Files). A missing file or directory is not an error:
// contidd must start on a fresh install. The result is validated as a
// whole, so a drop-in may correct a value of the main file.
func Load(p string) (Config, error) {
	cfg := Default()
	files, err := Files(p)
	if err != nil {
		return cfg, err
	}
	for _, name := range files {
		if err := cfg.parseFile(name); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

// DropInDir is the drop-in directory of the configuration file p:
// /etc/contid/contid.conf.d for /etc/contid/contid.conf.
func DropInDir(p string) string { return p + ".d" }

// Files lists what Load reads, in order: the file at p if it exists, then
// the *.conf files of DropInDir(p) in lexical order of their names, so
// that, as with systemd's drop-ins, a later file's setting wins.
func Files(p string) ([]string, error) {
	var files []string
	if _, err := os.Stat(p); err == nil {
		files = append(files, p)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open config: %w", err)
	}
	dir := DropInDir(p)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read drop-in directory: %w", err)
	}
	// os.ReadDir sorts by name.
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		files = append(files, path.Join(dir, e.Name()))
	}
	return files, nil
}

func (c *Config) parseFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	return c.parseSettings(f, name)
}

// Parse reads a configuration from r on top of the defaults; name is used
// in error messages.
func Parse(r io.Reader, name string) (Config, error) {
	cfg := Default()
	err := cfg.parse(r, name)
	return cfg, err
}

func (c *Config) parse(r io.Reader, name string) error {
	if err := c.parseSettings(r, name); err != nil {
		return err
	}
	return c.Validate()
}

// parseSettings applies the settings in r without validating the result,
// which may be only part of the configuration.
func (c *Config) parseSettings(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	section := ""
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%w: %s:%d: %s", ErrSyntax, name, lineNo, fmt.Sprintf(format, a...))
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return fail("unterminated section header %q", line)
			}
			section = line[1 : len(line)-1]
			if section != "Manager" && section != "Audit" && section != "Registry" && section != "Enforce" {
				return fail("unknown section [%s]", section)
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fail("expected Key=Value, got %q", line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if section == "" {
			return fail("key %s outside a section", key)
		}
		if err := c.set(section, key, value); err != nil {
			return fail("%s.%s: %v", section, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

func (c *Config) set(section, key, value string) error {
	var err error
	switch section + "." + key {
	case "Manager.AutotagParents":
		c.AutotagParents = nil
		for _, p := range strings.Fields(value) {
			c.AutotagParents = append(c.AutotagParents, "/"+strings.Trim(path.Clean("/"+p), "/"))
		}
	case "Manager.AutotagScopes":
		c.AutotagScopes = nil
		for _, f := range strings.Fields(value) {
			p, perr := contid.ParseScopePattern(f)
			if perr != nil {
				return perr
			}
			c.AutotagScopes = append(c.AutotagScopes, p)
		}
	case "Manager.MaxDepth":
		c.MaxDepth, err = strconv.Atoi(value)
	case "Manager.MaxContainers":
		c.MaxContainers, err = strconv.Atoi(value)
	case "Manager.StateDirectory":
		c.StateDirectory = value
	case "Manager.PinDirectory":
		c.PinDirectory = value
	case "Manager.Socket":
		c.Socket = value
	case "Manager.DockerSocket":
		c.DockerSocket = value
	case "Manager.Mode":
		c.Mode = Mode(value)
	case "Manager.LogLevel":
		c.LogLevel = value
	case "Audit.Socket":
		c.AuditSocket = AuditSocket(value)
	case "Audit.BacklogWaitTime":
		var v uint64
		v, err = strconv.ParseUint(value, 10, 32)
		c.BacklogWaitTime = uint32(v)
	case "Audit.WriteUntagged":
		c.WriteUntagged, err = parseBool(value)
	case "Audit.LoadRules":
		c.LoadRules, err = parseBool(value)
	case "Audit.RulesFile":
		c.RulesFile = value
	case "Audit.BacklogLimit":
		var v uint64
		v, err = strconv.ParseUint(value, 10, 32)
		c.BacklogLimit = uint32(v)
	case "Audit.EnableAuditing":
		c.EnableAuditing, err = parseBool(value)
	case "Registry.KeepExited":
		c.KeepExited, err = strconv.Atoi(value)
	case "Enforce.AllowBPF":
		c.AllowBPF, err = parseBool(value)
	case "Enforce.AllowModules":
		c.AllowModules, err = parseBool(value)
	case "Enforce.DenialRecordBurst":
		c.DenialRecordBurst, err = parseCount(value)
	case "Enforce.DenialRecordRate":
		c.DenialRecordRate, err = parseCount(value)
	default:
		return errors.New("unknown key")
	}
	return err
}

// Validate checks the ranges and enumerations; flags are applied on top of
// the file, so contidd calls it again after them.
func (c *Config) Validate() error {
	switch {
	case c.MaxDepth < 1 || c.MaxDepth > contid.MaxDepth:
		return fmt.Errorf("%w: MaxDepth=%d must be between 1 and %d", ErrSyntax, c.MaxDepth, contid.MaxDepth)
	case c.MaxContainers < 1:
		return fmt.Errorf("%w: MaxContainers=%d must be positive", ErrSyntax, c.MaxContainers)
	case c.Mode != ModeAuto && c.Mode != ModeTracking:
		return fmt.Errorf("%w: Mode=%q must be auto or tracking", ErrSyntax, c.Mode)
	case !path.IsAbs(c.StateDirectory) || !path.IsAbs(c.PinDirectory):
		return fmt.Errorf("%w: StateDirectory and PinDirectory must be absolute paths", ErrSyntax)
	case c.AuditSocket != AuditSocketAuto && c.AuditSocket != AuditSocketUnicast && c.AuditSocket != AuditSocketMulticast:
		return fmt.Errorf("%w: [Audit] Socket=%q must be auto, unicast or multicast", ErrSyntax, c.AuditSocket)
	case c.BacklogWaitTime > maxBacklogWaitTime:
		return fmt.Errorf("%w: BacklogWaitTime=%d must be at most %d (the kernel's limit)", ErrSyntax, c.BacklogWaitTime, maxBacklogWaitTime)
	case c.KeepExited < 1:
		return fmt.Errorf("%w: [Registry] KeepExited=%d must be positive", ErrSyntax, c.KeepExited)
	case c.DenialRecordBurst > MaxDenialRecordBurst:
		return fmt.Errorf("%w: [Enforce] DenialRecordBurst=%d must be at most %d (0 records every denial)", ErrSyntax, c.DenialRecordBurst, MaxDenialRecordBurst)
	case c.DenialRecordRate > MaxDenialRecordRate:
		return fmt.Errorf("%w: [Enforce] DenialRecordRate=%d must be at most %d a second (0 records every denial)", ErrSyntax, c.DenialRecordRate, MaxDenialRecordRate)
	case c.Socket != "" && !path.IsAbs(c.Socket):
		return fmt.Errorf("%w: Socket=%q must be an absolute path (or empty to disable)", ErrSyntax, c.Socket)
	}
	if _, ok := LogLevels[c.LogLevel]; !ok {
		return fmt.Errorf("%w: LogLevel=%q is not a syslog level name (err, warning, notice, info, debug, ...)", ErrSyntax, c.LogLevel)
	}
	return nil
}

// The largest denial budget: past these the ring buffer (about 5,000
// denials) is no longer shielded from a single container, and the
// budget would only hide a typo.
const (
	MaxDenialRecordBurst = 4096
	MaxDenialRecordRate  = 4096
)

// parseCount reads a non-negative 32-bit count.
func parseCount(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a count (0 or more): %w", s, err)
	}
	return uint32(v), nil
}

// maxBacklogWaitTime is the largest backlog wait the kernel accepts:
// ten times its default of 60 s, in jiffies at HZ=1000 as auditctl
// counts.
const maxBacklogWaitTime = 600000

// parseBool accepts the spellings systemd accepts.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}
