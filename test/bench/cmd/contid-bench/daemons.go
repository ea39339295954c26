package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/kernel"
)

// proc is a daemon the bench started; it is ended by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	undo func()
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	p.undo = cleanups.push(name+" pid "+strconv.Itoa(cmd.Process.Pid), p.stop)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop on SIGTERM within 10s; killed", p.name)
	}
}

// tempDir makes a directory removed at cleanup.
func tempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	cleanups.push("dir "+d, func() error { return os.RemoveAll(d) })
	return d, nil
}

// startDBus starts a private system-bus dbus-daemon: the stock system
// policy with its socket moved into dir and contid's own policy file
// included, so method calls go through the same policy checks as on a
// host; it never touches the host's bus.
func startDBus(cfg *config, dir string) (*proc, string, error) {
	stock, err := os.ReadFile("/usr/share/dbus-1/system.conf")
	if err != nil {
		return nil, "", fmt.Errorf("no system bus config to copy: %w", err)
	}
	policy, err := os.ReadFile(filepath.Join(cfg.root, "units", "org.contid1.conf"))
	if err != nil {
		return nil, "", fmt.Errorf("contid's D-Bus policy: %w", err)
	}
	// dbus-daemon drops to user messagebus and must reach its socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "system_bus_socket")
	conf := string(stock)
	conf = regexp.MustCompile(`(?s)<listen>.*?</listen>`).ReplaceAllString(conf, "<listen>unix:path="+sock+"</listen>")
	conf = regexp.MustCompile(`(?s)<pidfile>.*?</pidfile>`).ReplaceAllString(conf, "")
	conf = regexp.MustCompile(`<fork\s*/>`).ReplaceAllString(conf, "")
	conf = regexp.MustCompile(`<standard_system_servicedirs\s*/>`).ReplaceAllString(conf, "")
	conf = regexp.MustCompile(`(?s)<includedir>/etc/dbus-1/system.d</includedir>`).ReplaceAllString(conf, "")
	conf = regexp.MustCompile(`(?s)<include[^d][^>]*>[^<]*</include>`).ReplaceAllString(conf, "")
	policyDir := filepath.Join(dir, "policy.d")
	conf = strings.Replace(conf, "</busconfig>", "<includedir>"+policyDir+"</includedir>\n</busconfig>", 1)
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "org.contid1.conf"), policy, 0o644); err != nil {
		return nil, "", err
	}
	confPath := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command("dbus-daemon", "--nofork", "--print-address=1", "--config-file="+confPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	p, err := startProc("dbus-daemon", cmd)
	if err != nil {
		return nil, "", err
	}
	addrCh := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addrCh <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-addrCh:
		if addr == "" {
			return nil, "", errors.New("dbus-daemon printed no address")
		}
		return p, addr, nil
	case <-time.After(10 * time.Second):
		return nil, "", errors.New("dbus-daemon did not start within 10s")
	}
}

// contiddOpts says how to run the daemon under test.
type contiddOpts struct {
	busAddr string
	dir     string // state, socket and config live here
	mountNS string // if set, contidd runs in this mount namespace (the private journald's)
	audit   bool
	// auditSocket is the [Audit] Socket= value (auto, unicast,
	// multicast); "" leaves the key out, for a contidd without it.
	auditSocket string
}

type contidd struct {
	*proc
	pinDir string
	socket string
}

// startContidd runs bin/contidd with a private config: its own pin
// directory, state directory and p2p socket, no autotag parents, so the
// host's /sys/fs/bpf/contid, /run/contid and /var/lib/contid are never
// touched. It waits for READY=1 on a notify socket of our own, which
// contidd sends only once its programs are live and the bus name is owned.
func startContidd(cfg *config, o contiddOpts) (*contidd, error) {
	bin, err := filepath.Abs(filepath.Join(cfg.binDir, "contidd"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("contidd not built (make build): %w", err)
	}
	pinDir := fmt.Sprintf("/sys/fs/bpf/contid-bench-d%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	state := filepath.Join(o.dir, "state")
	sock := filepath.Join(o.dir, "contid.bus")
	// LoadRules=no: the bench loads its own rule, the same one auditd gets.
	conf := fmt.Sprintf(`[Manager]
StateDirectory=%s
PinDirectory=%s
Socket=%s
Mode=tracking
LogLevel=notice

[Audit]
WriteUntagged=no
LoadRules=no
BacklogLimit=8192
`, state, pinDir, sock)
	if o.auditSocket != "" {
		conf += "Socket=" + o.auditSocket + "\n"
	}
	confPath := filepath.Join(o.dir, "contid.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cleanups.push("contidd pins "+pinDir, func() error {
		err := kernel.Unpin(pinDir)
		_ = os.RemoveAll(pinDir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	})

	notifyPath := filepath.Join(o.dir, "notify")
	nfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(nfd)
	if err := unix.Bind(nfd, &unix.SockaddrUnix{Name: notifyPath}); err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}

	// The flags repeat the config so a config key renamed later cannot
	// send the bench to the production paths.
	args := []string{"--config", confPath, "--pin-directory", pinDir, "--state-directory", state,
		"--socket", sock, "--mode", "tracking", "--autotag-parents", "none"}
	if o.busAddr != "" {
		args = append(args, "--bus-address", o.busAddr)
	} else {
		args = append(args, "--no-bus")
	}
	var cmd *exec.Cmd
	if o.mountNS != "" {
		cmd = exec.Command("nsenter", append([]string{"--mount=" + o.mountNS, "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	// contidd runs at its unit's priority, as installed: the figures are
	// those of the service users get, and auditd, the baseline, takes its
	// own boost by default too.
	if nice, err := unitNice(cfg.root); err != nil {
		return nil, err
	} else if nice != 0 {
		cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(nice), cmd.Path}, cmd.Args[1:]...)...)
	}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	p, err := startProc("contidd", cmd)
	if err != nil {
		return nil, err
	}
	d := &contidd{proc: p, pinDir: pinDir, socket: sock}

	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(nfd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue // the Go runtime's preemption signal
			}
			if err != nil {
				ready <- err
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					ready <- nil
					return
				}
			}
		}
	}()
	// Recvfrom blocks; a timeout on the socket bounds the wait.
	tv := unix.NsecToTimeval((60 * time.Second).Nanoseconds())
	_ = unix.SetsockoptTimeval(nfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	select {
	case err := <-ready:
		if err != nil {
			return nil, fmt.Errorf("contidd never said READY=1: %w", err)
		}
	case <-p.done:
		return nil, fmt.Errorf("contidd exited during startup: %v", p.cmd.ProcessState)
	}
	return d, nil
}

// rssKB reads VmRSS (and VmHWM) of a process.
func rssKB(pid int) (rss, hwm float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		x, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			rss = x
		case "VmHWM":
			hwm = x
		}
	}
	return rss, hwm, nil
}

// bpfMapKB sums the memlock of every distinct BPF map the process holds
// an fd to, from /proc/<pid>/fdinfo (the figure bpftool map show prints),
// and gives it per map name too.
func bpfMapKB(pid int) (float64, map[string]float64, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	seen := map[string]bool{}
	perMap := map[string]float64{}
	var total float64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var id string
		var memlock float64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch k {
			case "map_id":
				id = strings.TrimSpace(v)
			case "memlock":
				memlock, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		total += memlock
		name := "map " + id
		if n, err := strconv.ParseUint(id, 10, 32); err == nil {
			if m, err := ebpf.NewMapFromID(ebpf.MapID(n)); err == nil {
				if info, err := m.Info(); err == nil && info.Name != "" {
					name = info.Name
				}
				m.Close()
			}
		}
		perMap[name] = round(perMap[name]+memlock/1024, 1)
	}
	return total / 1024, perMap, nil
}

// cpuSeconds is user+system time of a process (all its threads).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	// utime and stime are fields 14 and 15 of stat, 11 and 12 here.
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// unitNice is the Nice= of contidd.service in the repository at root, 0
// when it sets none.
func unitNice(root string) (int, error) {
	b, err := os.ReadFile(filepath.Join(root, "units", "contidd.service"))
	if err != nil {
		return 0, fmt.Errorf("contidd's unit: %w", err)
	}
	return parseNice(string(b))
}

// parseNice reads the last Nice= of a unit, as systemd does when a
// setting repeats.
func parseNice(unit string) (int, error) {
	nice := 0
	for _, line := range strings.Split(unit, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "Nice=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < -20 || n > 19 {
			return 0, fmt.Errorf("contidd's unit: Nice=%s is not a niceness from -20 to 19", v)
		}
		nice = n
	}
	return nice, nil
}
