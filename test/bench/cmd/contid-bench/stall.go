package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/contid/contid/internal/hostile"
)

// stallKeys are the stall phase's metrics: the well-behaved client's
// latencies on the peer-to-peer socket with nobody attacking it and under
// 1,000 hostile clients, and what contidd held meanwhile.
var stallKeys = []string{"stall_tag_p99_idle_ms", "stall_tag_p99_attack_ms", "stall_tag_p99_ratio",
	"stall_list_p99_idle_ms", "stall_list_p99_attack_ms", "stall_list_p99_ratio",
	"stall_tag_p99_control_ms", "stall_tag_p99_control_ratio", "stall_list_p99_control_ms", "stall_list_p99_control_ratio",
	"stall_rss_peak_mb", "stall_fds_peak", "stall_contidd_cpu_idle", "stall_contidd_cpu_attack",
	"stall_attackers_cpu_attack", "stall_attackers_cpu_control"}

// Hostile clients, when contid-bench runs as one of them (the phase starts
// itself again as nobody).
var (
	hostileSocket = flag.String("hostile", "", "internal: attack the peer-to-peer socket at this path (the stall phase runs contid-bench so, as nobody)")
	hostileN      = flag.Int("hostile-n", 250, "internal: connections of each kind")
	hostileFor    = flag.Duration("hostile-for", 10*time.Second, "internal: how long to attack")
)

// refuseSocket makes contid-bench the stall phase's control server.
var refuseSocket = flag.String("refuse", "", "internal: listen on this path and close every connection at once (the stall phase's control)")

// runRefuser is a server that refuses every connection at once and does
// nothing else. The same attackers sent at it instead of contidd load the
// machine as they do in an attack window (connecting, being turned away,
// connecting again a second later), minus all contidd does for them: the
// well-behaved client's latency then is what the attack costs any
// process on the host, which no server design can take back.
func runRefuser() {
	_ = os.Remove(*refuseSocket)
	ln, err := net.Listen("unix", *refuseSocket)
	if err == nil {
		err = os.Chmod(*refuseSocket, 0o666)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "control server:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.Close()
	}
}

// runHostile is contid-bench as an attacker: it prints what each kind of
// connection saw, as JSON.
func runHostile() {
	ctx, cancel := context.WithTimeout(context.Background(), *hostileFor)
	defer cancel()
	if err := json.NewEncoder(os.Stdout).Encode(hostile.AttackAll(ctx, *hostileSocket, *hostileN)); err != nil {
		os.Exit(1)
	}
}

// stallPhase measures what 1,000 hostile clients as nobody (non-readers,
// half-sent 16 MiB messages, descriptor floods, idle connections:
// internal/hostile) cost a well-behaved root client of the peer-to-peer
// socket: the p99 of TagCgroup and of ListContainers (with 200 containers
// listed) under attack against the same calls with no attack, in
// alternating windows of the same run. The goal is a ratio of at most 2.
// Control windows send the same attackers at a server that refuses them
// all: their ratio is the attack's cost to the client through the machine
// alone (2 cores shared with 1,000 clients), the part contidd cannot
// remove.
func stallPhase(cfg *config, rep *report) error {
	fail := func(err error) error {
		for _, k := range stallKeys {
			rep.unmeasured(k, err.Error())
		}
		return err
	}
	dir, err := tempDir("contid-bench-stall-")
	if err != nil {
		return fail(err)
	}
	// nobody connects to the socket in here and runs the attacker from it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	attacker := filepath.Join(dir, "contid-bench")
	if b, err := os.ReadFile(self); err != nil {
		return fail(err)
	} else if err := os.WriteFile(attacker, b, 0o755); err != nil {
		return fail(err)
	}
	tree, err := makeCgroupTree("contid-bench-stall")
	if err != nil {
		return fail(err)
	}
	_, addr, err := startDBus(cfg, dir)
	if err != nil {
		return fail(err)
	}
	d, err := startContidd(cfg, contiddOpts{busAddr: addr, dir: dir})
	if err != nil {
		return fail(err)
	}
	conn, err := dbus.Dial("unix:path=" + d.socket)
	if err == nil {
		err = conn.Auth(nil)
	}
	if err == nil {
		err = conn.Hello()
	}
	if err != nil {
		return fail(fmt.Errorf("connecting to the peer-to-peer socket: %w", err))
	}
	defer conn.Close()
	mgr := conn.Object(busName, objPath)

	next := 0
	tag := func() (float64, error) {
		cg, err := tree.child(fmt.Sprintf("c%05d", next))
		next++
		if err != nil {
			return 0, err
		}
		t := time.Now()
		call := mgr.Call(managerIf+".TagCgroup", 0, cg.rel(), uint64(0), map[string]dbus.Variant{})
		return float64(time.Since(t).Microseconds()) / 1000, call.Err
	}
	list := func() (float64, error) {
		t := time.Now()
		call := mgr.Call(managerIf+".ListContainers", 0)
		return float64(time.Since(t).Microseconds()) / 1000, call.Err
	}
	for i := 0; i < 200; i++ {
		if _, err := tag(); err != nil {
			return fail(fmt.Errorf("TagCgroup: %w", err))
		}
	}
	// rounds alternates the two calls until n of each or the time is up.
	rounds := func(n int, limit time.Duration) (tags, lists []float64, err error) {
		end := time.Now().Add(limit)
		for i := 0; i < n && time.Now().Before(end); i++ {
			tm, err := tag()
			if err != nil {
				return nil, nil, fmt.Errorf("TagCgroup: %w", err)
			}
			lm, err := list()
			if err != nil {
				return nil, nil, fmt.Errorf("ListContainers: %w", err)
			}
			tags, lists = append(tags, tm), append(lists, lm)
			time.Sleep(10 * time.Millisecond)
		}
		return tags, lists, nil
	}
	// Idle and attack windows alternate, so that whatever else the
	// machine does during the phase (a build, a helper's tests) lands on
	// both sides of the ratio instead of on one.
	cycles, idleFor, attackFor := 4, 5*time.Second, 9*time.Second
	if cfg.quick {
		cycles, idleFor, attackFor = 2, 3*time.Second, 6*time.Second
	}
	const warmUp = 3 * time.Second // the attackers connect and start
	var idleTags, idleLists, atkTags, atkLists, ctlTags, ctlLists []float64
	var idleCPU, idleSecs, cpu, atkSecs float64
	var peakRSS float64
	peakFDs := 0
	// The attackers' own CPU, per second of their life, in each kind of
	// window: what they load the machine with when contidd admits some of
	// them, and when every connection is refused at once.
	var atkCPU, atkLife, ctlCPU, ctlLife float64
	attackerCPU := func(p *proc, started time.Time, cpu, life *float64) {
		if st := p.cmd.ProcessState; st != nil {
			*cpu += (st.UserTime() + st.SystemTime()).Seconds()
			*life += time.Since(started).Seconds()
		}
	}
	kinds := map[hostile.Kind]*hostile.Stats{}
	var order []hostile.Kind
	idle := func() error {
		c0, _ := cpuSeconds(d.pid())
		t0 := time.Now()
		tags, lists, err := rounds(1<<20, idleFor)
		if err != nil {
			return fail(err)
		}
		if c1, cerr := cpuSeconds(d.pid()); cerr == nil {
			idleCPU += c1 - c0
			idleSecs += time.Since(t0).Seconds()
		}
		idleTags, idleLists = append(idleTags, tags...), append(idleLists, lists...)
		return nil
	}
	hostileClients := func(socket string) (*proc, *strings.Builder, error) {
		cmd := exec.Command(attacker, "-hostile", socket, "-hostile-n", "250", "-hostile-for", (warmUp + attackFor + time.Second).String())
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		atk, err := startProc("hostile clients (nobody)", cmd)
		return atk, out, err
	}
	refuser, err := startProc("control server", exec.Command(attacker, "-refuse", filepath.Join(dir, "refuse.sock")))
	if err != nil {
		return fail(err)
	}
	defer refuser.undo()
	// control is an attack window with the attackers sent at a server
	// that refuses them all (runRefuser) instead of contidd.
	control := func() error {
		started := time.Now()
		atk, _, err := hostileClients(filepath.Join(dir, "refuse.sock"))
		if err != nil {
			return fail(err)
		}
		time.Sleep(warmUp)
		tags, lists, err := rounds(1<<20, attackFor)
		<-atk.done
		attackerCPU(atk, started, &ctlCPU, &ctlLife)
		atk.undo()
		if err != nil {
			return fail(fmt.Errorf("in a control window: %w", err))
		}
		ctlTags, ctlLists = append(ctlTags, tags...), append(ctlLists, lists...)
		return nil
	}
	attack := func() error {
		started := time.Now()
		atk, out, err := hostileClients(d.socket)
		if err != nil {
			return fail(err)
		}
		stopSampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				if rss, _, err := rssKB(d.pid()); err == nil {
					peakRSS = max(peakRSS, rss)
				}
				if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid())); err == nil {
					peakFDs = max(peakFDs, len(fds))
				}
				select {
				case <-stopSampling:
					return
				case <-t.C:
				}
			}
		}()
		time.Sleep(warmUp)
		c0, _ := cpuSeconds(d.pid())
		t0 := time.Now()
		tags, lists, err := rounds(1<<20, attackFor)
		if c1, cerr := cpuSeconds(d.pid()); cerr == nil {
			cpu += c1 - c0
			atkSecs += time.Since(t0).Seconds()
		}
		close(stopSampling)
		<-sampled
		<-atk.done
		attackerCPU(atk, started, &atkCPU, &atkLife)
		atk.undo()
		if err != nil {
			return fail(fmt.Errorf("under attack: %w", err))
		}
		atkTags, atkLists = append(atkTags, tags...), append(atkLists, lists...)
		var stats []hostile.Stats
		if err := json.Unmarshal([]byte(out.String()), &stats); err != nil {
			return fail(fmt.Errorf("the attackers' report %q: %w", out.String(), err))
		}
		for _, st := range stats {
			sum, ok := kinds[st.Kind]
			if !ok {
				sum = &hostile.Stats{Kind: st.Kind}
				kinds[st.Kind] = sum
				order = append(order, st.Kind)
			}
			sum.Attempts += st.Attempts
			sum.Refused += st.Refused
			sum.Admitted += st.Admitted
			sum.Cut += st.Cut
			sum.MaxCutAfterMS = max(sum.MaxCutAfterMS, st.MaxCutAfterMS)
		}
		return nil
	}
	// Every other cycle the order turns round, so that what grows during
	// the phase (the list holds one more container after each TagCgroup)
	// lands on every side of the ratios alike.
	for cycle := 1; cycle <= cycles; cycle++ {
		windows := []func() error{idle, attack, control}
		if cycle%2 == 0 {
			windows = []func() error{control, attack, idle}
		}
		for _, w := range windows {
			if err := w(); err != nil {
				return err
			}
		}
		progress("stall: after cycle %d/%d: TagCgroup p99 so far %.2f ms idle, %.2f ms under attack, %.2f ms in control windows", cycle, cycles, summarize(idleTags).P99, summarize(atkTags).P99, summarize(ctlTags).P99)
	}
	var stats []hostile.Stats
	for _, k := range order {
		s := kinds[k]
		stats = append(stats, *s)
		progress("stall: %-10s %d connection attempts, %d refused at accept, %d admitted, %d cut by contidd", s.Kind, s.Attempts, s.Refused, s.Admitted, s.Cut)
	}
	rep.detail("stall_attackers", stats)
	if idleSecs > 0 {
		idleCPU /= idleSecs
	}
	if atkSecs > 0 {
		cpu /= atkSecs
	}
	if len(atkTags) < 20 {
		return fail(errors.New("fewer than 20 calls under attack: too few for a p99"))
	}
	it, at, il, al := summarize(idleTags), summarize(atkTags), summarize(idleLists), summarize(atkLists)
	ct, cl := summarize(ctlTags), summarize(ctlLists)
	rep.set("stall_tag_p99_idle_ms", it.P99)
	rep.set("stall_tag_p99_attack_ms", at.P99)
	rep.set("stall_tag_p99_ratio", at.P99/it.P99)
	rep.set("stall_list_p99_idle_ms", il.P99)
	rep.set("stall_list_p99_attack_ms", al.P99)
	rep.set("stall_list_p99_ratio", al.P99/il.P99)
	rep.set("stall_tag_p99_control_ms", ct.P99)
	rep.set("stall_tag_p99_control_ratio", ct.P99/it.P99)
	rep.set("stall_list_p99_control_ms", cl.P99)
	rep.set("stall_list_p99_control_ratio", cl.P99/il.P99)
	rep.set("stall_rss_peak_mb", peakRSS/1024)
	rep.set("stall_fds_peak", float64(peakFDs))
	rep.set("stall_contidd_cpu_idle", idleCPU)
	rep.set("stall_contidd_cpu_attack", cpu)
	if atkLife > 0 && ctlLife > 0 {
		rep.set("stall_attackers_cpu_attack", atkCPU/atkLife)
		rep.set("stall_attackers_cpu_control", ctlCPU/ctlLife)
	} else {
		rep.unmeasured("stall_attackers_cpu_attack", "the attackers' CPU time was not recorded")
		rep.unmeasured("stall_attackers_cpu_control", "the attackers' CPU time was not recorded")
	}
	rep.detail("stall_tag_ms", map[string]summary{"idle": it, "attack": at, "control": ct})
	rep.detail("stall_list_ms", map[string]summary{"idle": il, "attack": al, "control": cl})
	rep.detail("stall_setup", "private dbus-daemon and contidd (at its unit's niceness); a godbus client as root on the peer-to-peer socket alternates TagCgroup (a new cgroup each) and ListContainers (200+ containers) with 10 ms pauses, in idle, attack and control windows, 4 of each, the order turned round in every other cycle (I A C C A I I A C C A I) so that the growing list lands on every side; 1,000 hostile clients as nobody, 250 of each kind (internal/hostile), reconnecting 1 s after each cut or refusal; in control windows the same clients are sent at a server that closes every connection at once (contid-bench -refuse), so the control ratio is what the attack costs the client without contidd in it")
	progress("stall: contidd peak RSS %.1f MB, peak %d descriptors, %.2f CPUs idle, %.2f CPUs under attack", peakRSS/1024, peakFDs, idleCPU, cpu)
	if atkLife > 0 && ctlLife > 0 {
		progress("stall: the attackers used %.2f CPUs against contidd, %.2f against the refusing server", atkCPU/atkLife, ctlCPU/ctlLife)
	}
	return d.stop()
}
