package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	busName   = "org.contid1"
	objPath   = dbus.ObjectPath("/org/contid1")
	managerIf = "org.contid1.Manager"
)

// apiPhase registers 10,000 containers through the real D-Bus API of a
// real contidd behind a real dbus-daemon, timing every call, and reads
// the daemon's memory idle and at 10,000.
func apiPhase(cfg *config, rep *report) error {
	keys := []string{"tag_p50_ms", "tag_p99_ms", "get_by_pid_p50_ms", "get_by_pid_p99_ms", "list_10k_ms", "rss_idle_mb", "rss_10k_mb", "bpf_map_kb_idle", "bpf_map_kb_10k"}
	fail := func(err error) error {
		for _, k := range keys {
			rep.unmeasured(k, err.Error())
		}
		return err
	}
	n := 10000
	if cfg.quick {
		n = 2000
	}
	dir, err := tempDir("contid-bench-api-")
	if err != nil {
		return fail(err)
	}
	// The cgroups come first so that, at cleanup (last in, first out),
	// contidd is stopped before they are removed under it.
	tree, err := makeCgroupTree("contid-bench-api")
	if err != nil {
		return fail(err)
	}
	t0 := time.Now()
	cgs := make([]benchCgroup, n)
	for i := range cgs {
		if cgs[i], err = tree.child(fmt.Sprintf("c%05d", i)); err != nil {
			return fail(err)
		}
	}
	progress("created %d cgroups in %s", n, time.Since(t0).Round(time.Millisecond))

	_, addr, err := startDBus(cfg, dir)
	if err != nil {
		return fail(err)
	}
	// A journald of its own, as on any systemd host: contidd records
	// every tag operation there (and in the kernel audit log), and that
	// is part of what a TagCgroup costs.
	jdir := filepath.Join(dir, "journald")
	if err := os.Mkdir(jdir, 0o755); err != nil {
		return fail(err)
	}
	jd, _, err := startJournald(jdir)
	if err != nil {
		return fail(err)
	}
	d, err := startContidd(cfg, contiddOpts{busAddr: addr, dir: dir, mountNS: fmt.Sprintf("/proc/%d/ns/mnt", jd.pid())})
	if err != nil {
		return fail(err)
	}
	conn, err := dbus.Connect(addr)
	if err != nil {
		return fail(fmt.Errorf("connecting to the private bus: %w", err))
	}
	defer conn.Close()
	mgr := conn.Object(busName, objPath)

	// Idle: after startup work has settled.
	time.Sleep(2 * time.Second)
	rss, _, err := rssKB(d.pid())
	if err != nil {
		return fail(err)
	}
	rep.set("rss_idle_mb", rss/1024)
	if kb, maps, err := bpfMapKB(d.pid()); err == nil {
		rep.set("bpf_map_kb_idle", kb)
		rep.detail("bpf_map_kb_per_map_idle", maps)
	}
	progress("contidd idle: RSS %.1f MB", rss/1024)

	// TagCgroup, one call at a time as an orchestrator would issue them:
	// the latency of each includes the bus round trip through dbus-daemon.
	tagMS := make([]float64, 0, n)
	ids := make(map[uint64]bool, n)
	for i, cg := range cgs {
		var id uint64
		var obj dbus.ObjectPath
		t := time.Now()
		call := mgr.Call(managerIf+".TagCgroup", 0, cg.rel(), uint64(0), map[string]dbus.Variant{})
		el := time.Since(t)
		if call.Err != nil {
			return fail(fmt.Errorf("TagCgroup %s (call %d): %w", cg.rel(), i+1, call.Err))
		}
		if err := call.Store(&id, &obj); err != nil {
			return fail(fmt.Errorf("TagCgroup reply: %w", err))
		}
		if id == 0 || ids[id] {
			return fail(fmt.Errorf("TagCgroup %s returned ID %d twice or zero", cg.rel(), id))
		}
		ids[id] = true
		tagMS = append(tagMS, float64(el.Microseconds())/1000)
		if (i+1)%2000 == 0 {
			s := summarize(tagMS[len(tagMS)-2000:])
			progress("tagged %d/%d cgroups: last 2000 p50 %.3f ms p99 %.3f ms", i+1, n, s.Median, s.P99)
		}
	}
	ts := summarize(tagMS)
	rep.set("tag_p50_ms", ts.Median)
	rep.set("tag_p99_ms", ts.P99)
	rep.detail("tag_cgroup_ms", ts)
	rep.detail("containers_registered", n)

	// GetContainerByPID: live processes forked inside tagged cgroups, so
	// each lookup resolves through the kernel's tag of a real process.
	var sleepers []*exec.Cmd
	defer func() {
		for _, c := range sleepers {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for i := 0; i < 50; i++ {
		c := exec.Command("/bin/sleep", "600")
		if err := cgs[i*n/50].start(c); err != nil {
			return fail(err)
		}
		sleepers = append(sleepers, c)
	}
	var getMS []float64
	for i := 0; i < 2000; i++ {
		pid := uint32(sleepers[i%len(sleepers)].Process.Pid)
		var obj dbus.ObjectPath
		t := time.Now()
		err := mgr.Call(managerIf+".GetContainerByPID", 0, pid).Store(&obj)
		el := time.Since(t)
		if err != nil {
			return fail(fmt.Errorf("GetContainerByPID %d: %w", pid, err))
		}
		if obj == "" || obj == "/" {
			return fail(fmt.Errorf("GetContainerByPID %d: no container", pid))
		}
		getMS = append(getMS, float64(el.Microseconds())/1000)
	}
	gs := summarize(getMS)
	rep.set("get_by_pid_p50_ms", gs.Median)
	rep.set("get_by_pid_p99_ms", gs.P99)
	rep.detail("get_container_by_pid_ms", gs)
	progress("GetContainerByPID: p50 %.3f ms p99 %.3f ms over %d calls", gs.Median, gs.P99, gs.N)

	// ListContainers with everything registered.
	var listMS, storeMS []float64
	for i := 0; i < 15; i++ {
		var list []struct {
			ID     uint64
			Name   string
			Unit   string
			Cgroup string
			Parent uint64
			Object dbus.ObjectPath
		}
		// The round trip ends when the reply is on the client, decoded from
		// the wire; converting it to Go structs is timed apart, as client
		// cost rather than contidd's.
		t := time.Now()
		call := mgr.Call(managerIf+".ListContainers", 0)
		el := time.Since(t)
		if call.Err != nil {
			return fail(fmt.Errorf("ListContainers: %w", call.Err))
		}
		t = time.Now()
		if err := call.Store(&list); err != nil {
			return fail(fmt.Errorf("ListContainers reply: %w", err))
		}
		storeMS = append(storeMS, float64(time.Since(t).Microseconds())/1000)
		if len(list) < n {
			return fail(fmt.Errorf("ListContainers returned %d entries, want at least %d", len(list), n))
		}
		listMS = append(listMS, float64(el.Microseconds())/1000)
	}
	ls := summarize(listMS)
	rep.set("list_10k_ms", ls.Median)
	rep.detail("list_containers_ms", ls)
	rep.detail("list_containers_client_store_ms", summarize(storeMS))
	progress("ListContainers with %d: median %.1f ms", n, ls.Median)

	rss, hwm, err := rssKB(d.pid())
	if err != nil {
		return fail(err)
	}
	rep.set("rss_10k_mb", rss/1024)
	rep.detail("contidd_vmhwm_mb_10k", round(hwm/1024, 1))
	if kb, maps, err := bpfMapKB(d.pid()); err == nil {
		rep.set("bpf_map_kb_10k", kb)
		rep.detail("bpf_map_kb_per_map_10k", maps)
	}
	progress("contidd with %d containers: RSS %.1f MB (peak %.1f MB)", n, rss/1024, hwm/1024)
	t := time.Now()
	if err := d.stop(); err != nil {
		progress("contidd: %v", err)
	}
	rep.detail("contidd_sigterm_to_exit_s_10k", round(time.Since(t).Seconds(), 2))
	rep.detail("api_transport", "private dbus-daemon (system.conf policy + units/org.contid1.conf) and private journald, godbus client as root, sequential calls; contidd pid "+strconv.Itoa(d.pid()))
	return nil
}
