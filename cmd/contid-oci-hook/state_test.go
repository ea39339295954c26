package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/contid/contid/dbus/client"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name, in string
		want     ociState // compared when wantErr is ""
		wantErr  string
	}{
		{"podman", `{"ociVersion":"1.0.2-dev","id":"3f2a","status":"created","pid":4711,"bundle":"/var/lib/containers/storage/overlay-containers/3f2a/userdata","annotations":{"io.container.manager":"libpod"}}`,
			ociState{OCIVersion: "1.0.2-dev", ID: "3f2a", Status: "created", PID: 4711, Bundle: "/var/lib/containers/storage/overlay-containers/3f2a/userdata", Annotations: map[string]string{"io.container.manager": "libpod"}}, ""},
		{"no annotations", `{"ociVersion":"1.0.0","id":"web","pid":9,"bundle":"/b"}`, ociState{OCIVersion: "1.0.0", ID: "web", PID: 9, Bundle: "/b"}, ""},
		{"unknown fields ignored", `{"id":"web","pid":9,"future":{"x":1}}`, ociState{ID: "web", PID: 9}, ""},
		{"no id", `{"pid":9}`, ociState{}, "no container id"},
		{"no pid (a poststop state)", `{"id":"web","status":"stopped"}`, ociState{}, "no process"},
		{"negative pid", `{"id":"web","pid":-1}`, ociState{}, "no process"},
		{"not json", `id=web`, ociState{}, "decode"},
		{"empty", ``, ociState{}, "decode"},
		{"too large", `{"id":"` + strings.Repeat("x", maxStateBytes) + `","pid":1}`, ociState{}, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseState(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.PID != tt.want.PID || got.Bundle != tt.want.Bundle || got.OCIVersion != tt.want.OCIVersion ||
				got.Status != tt.want.Status || len(got.Annotations) != len(tt.want.Annotations) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for k, v := range tt.want.Annotations {
				if got.Annotations[k] != v {
					t.Fatalf("annotation %s = %q, want %q", k, got.Annotations[k], v)
				}
			}
		})
	}
}

func TestParseConmon(t *testing.T) {
	const id = "3f2a9c"
	tests := []struct {
		name string
		argv []string
		want conmonCmd
		ok   bool
	}{
		{"podman 4.3", []string{"/usr/bin/conmon", "--api-version", "1", "-c", id, "-u", id, "-r", "/usr/bin/crun", "-b", "/x/userdata", "-p", "/x/pidfile", "-n", "pweb", "--exit-dir", "/run/libpod/exits"},
			conmonCmd{id: id, name: "pweb"}, true},
		{"long options", []string{"conmon", "--cid", id, "--name", "web 2"}, conmonCmd{id: id, name: "web 2"}, true},
		{"inline values", []string{"conmon", "--cid=" + id, "--name=pweb"}, conmonCmd{id: id, name: "pweb"}, true},
		{"no name", []string{"conmon", "-c", id}, conmonCmd{id: id}, true},
		{"a value that looks like an option", []string{"conmon", "-n", "-c", "-c", id}, conmonCmd{id: id, name: "-c"}, true},
		{"no id", []string{"conmon", "-n", "pweb"}, conmonCmd{}, false},
		{"dangling option", []string{"conmon", "-c", id, "-n"}, conmonCmd{id: id}, true},
		{"another program", []string{"/usr/bin/crun", "-c", id, "-n", "pweb"}, conmonCmd{}, false},
		{"conmon as an argument", []string{"sh", "conmon", "-c", id}, conmonCmd{}, false},
		{"empty", nil, conmonCmd{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(strings.Join(tt.argv, "\x00") + "\x00")
			got, ok := parseConmon(raw)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("parseConmon = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSystemdScope(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"machine.slice:libpod:3f2a", "/machine.slice/libpod-3f2a.scope", true},
		{"machine-pods.slice:libpod:3f2a", "/machine.slice/machine-pods.slice/libpod-3f2a.scope", true},
		{"a-b-c.slice:crun:web", "/a.slice/a-b.slice/a-b-c.slice/crun-web.scope", true},
		{":runc:web", "/system.slice/runc-web.scope", true},
		{"machine.slice::web", "/machine.slice/web.scope", true},
		{"machine.slice:libpod:web.scope", "/machine.slice/web.scope", true},
		{"-.slice:x:web", "/x-web.scope", true},
		{"/machine.slice/libpod-3f2a", "", false},
		{"/user.slice:x:y", "", false},
		{"machine.slice:libpod:", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := systemdScope(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("systemdScope(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTargetCgroup(t *testing.T) {
	systemd := ociConfig{Linux: &struct {
		CgroupsPath string `json:"cgroupsPath"`
	}{"machine.slice:libpod:3f2a"}}
	cgroupfs := ociConfig{Linux: &struct {
		CgroupsPath string `json:"cgroupsPath"`
	}{"/libpod_parent/libpod-3f2a"}}
	tests := []struct {
		name string
		proc string
		cfg  ociConfig
		want string
	}{
		{"the scope itself", "/machine.slice/libpod-3f2a.scope", systemd, "/machine.slice/libpod-3f2a.scope"},
		{"crun's child cgroup of the scope", "/machine.slice/libpod-3f2a.scope/container", systemd, "/machine.slice/libpod-3f2a.scope"},
		{"elsewhere than the config says", "/machine.slice/libpod-3f2a.scope2", systemd, "/machine.slice/libpod-3f2a.scope2"},
		{"cgroupfs manager", "/libpod_parent/libpod-3f2a", cgroupfs, "/libpod_parent/libpod-3f2a"},
		{"no linux section", "/x", ociConfig{}, "/x"},
	}
	for _, tt := range tests {
		if got := targetCgroup(tt.proc, tt.cfg); got != tt.want {
			t.Errorf("%s: targetCgroup(%q) = %q, want %q", tt.name, tt.proc, got, tt.want)
		}
	}
}

func TestLabels(t *testing.T) {
	const id = "3f2a9c"
	ann := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name       string
		state      map[string]string
		config     map[string]string
		conmon     conmonCmd
		haveConmon bool
		want       client.TagOptions
	}{
		{"podman: the name from conmon", ann("io.container.manager", "libpod"), nil, conmonCmd{id, "pweb"}, true,
			client.TagOptions{Name: "pweb", Manager: "podman", ManagerID: id}},
		{"podman's annotation only in config.json", nil, ann("io.container.manager", "libpod"), conmonCmd{id, "pweb"}, true,
			client.TagOptions{Name: "pweb", Manager: "podman", ManagerID: id}},
		{"conmon without podman's annotation is still podman's", nil, nil, conmonCmd{id, "pweb"}, true,
			client.TagOptions{Name: "pweb", Manager: "podman", ManagerID: id}},
		{"podman without conmon: no name rather than its ID", ann("io.container.manager", "libpod"), nil, conmonCmd{}, false,
			client.TagOptions{Manager: "podman", ManagerID: id}},
		{"CRI-O annotations", ann("io.kubernetes.cri-o.Name", "k8s_web_pod", "io.kubernetes.cri-o.ImageName", "registry.example/web:1"), nil, conmonCmd{}, false,
			client.TagOptions{Name: "k8s_web_pod", Manager: "oci", Image: "registry.example/web:1", ManagerID: id}},
		{"state annotations win over config.json", ann("org.opencontainers.image.ref.name", "a"), ann("org.opencontainers.image.ref.name", "b"), conmonCmd{id, "pweb"}, true,
			client.TagOptions{Name: "pweb", Manager: "podman", Image: "a", ManagerID: id}},
		{"plain runc: the ID is the name", nil, nil, conmonCmd{}, false,
			client.TagOptions{Name: id, Manager: "oci", ManagerID: id}},
		{"an unusable name is left out", nil, nil, conmonCmd{id, "bad\tname"}, true,
			client.TagOptions{Manager: "podman", ManagerID: id}},
		{"an unusable image is left out", ann("org.opencontainers.image.ref.name", strings.Repeat("i", 2000)), nil, conmonCmd{id, "pweb"}, true,
			client.TagOptions{Name: "pweb", Manager: "podman", ManagerID: id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ociState{ID: id, PID: 1, Annotations: tt.state}
			got := labels(st, ociConfig{Annotations: tt.config}, tt.conmon, tt.haveConmon)
			if got != tt.want {
				t.Fatalf("labels = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A container run from a root directory has that directory for its
// image; one run from an image's layers, mounted by containers/storage,
// has none unless an annotation names the image.
func TestLabelsRootDirectory(t *testing.T) {
	const id = "3f2a9c"
	root := func(p string) ociConfig {
		c := ociConfig{}
		c.Root = &struct {
			Path string `json:"path"`
		}{p}
		return c
	}
	tests := []struct {
		name   string
		bundle string
		cfg    ociConfig
		want   string
	}{
		{"podman --rootfs", "/var/lib/containers/storage/overlay-containers/" + id + "/userdata", root("/var/tmp/busybox/"), "/var/tmp/busybox"},
		{"runc bundle, relative root", "/srv/bundles/web", root("rootfs"), "/srv/bundles/web/rootfs"},
		{"an image's layers", "/var/lib/containers/storage/overlay-containers/" + id + "/userdata", root("/var/lib/containers/storage/overlay/abc/merged"), ""},
		{"rootless image layers", "/home/u/.local/share/containers/storage/overlay-containers/" + id + "/userdata", root("/home/u/.local/share/containers/storage/overlay/abc/merged"), ""},
		{"relative root without a bundle", "", root("rootfs"), ""},
		{"no root", "/srv/bundles/web", ociConfig{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ociState{ID: id, PID: 1, Bundle: tt.bundle}
			got := labels(st, tt.cfg, conmonCmd{id, "pweb"}, true)
			if got.Image != tt.want {
				t.Fatalf("image %q, want %q", got.Image, tt.want)
			}
		})
	}
	// An annotation naming the image wins over the directory.
	cfg := root("/var/tmp/busybox")
	cfg.Annotations = map[string]string{"org.opencontainers.image.ref.name": "busybox:1"}
	if got := labels(ociState{ID: id, PID: 1}, cfg, conmonCmd{id, "pweb"}, true); got.Image != "busybox:1" {
		t.Fatalf("image %q, want the annotation's", got.Image)
	}
}

// fakeProc writes a /proc-like tree: pid -> (ppid, argv, cgroup file).
func fakeProc(t *testing.T, procs map[int]struct {
	ppid   int
	argv   []string
	cgroup string
}) procReader {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// A command name with ") " in it, as /proc/PID/stat allows.
		stat := strconv.Itoa(pid) + " (we) ird) S " + strconv.Itoa(p.ppid) + " 1 1 0 -1\n"
		files := map[string]string{"stat": stat, "cmdline": strings.Join(p.argv, "\x00") + "\x00", "cgroup": p.cgroup}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return procReader{root: root}
}

func TestProcReader(t *testing.T) {
	const id = "3f2a9c"
	type proc = struct {
		ppid   int
		argv   []string
		cgroup string
	}
	p := fakeProc(t, map[int]proc{
		100: {1, []string{"/usr/bin/conmon", "-c", id, "-n", "pweb"}, "0::/system.slice/libpod-conmon-3f2a9c.scope\n"},
		200: {100, []string{"/usr/bin/crun", "create"}, "0::/system.slice/libpod-conmon-3f2a9c.scope\n"},
		300: {200, []string{"/usr/libexec/contid/contid-oci-hook"}, "0::/system.slice/libpod-conmon-3f2a9c.scope\n"},
		400: {200, []string{"/bin/sh"}, "12:pids:/x\n1:name=systemd:/y\n0::/machine.slice/libpod-3f2a9c.scope/container\n"},
		500: {1, []string{"/usr/bin/conmon", "-c", "other", "-n", "x"}, ""},
		510: {500, []string{"/usr/bin/crun"}, ""},
		520: {510, []string{"hook"}, ""},
		600: {1, []string{"hook"}, "1:name=systemd:/legacy\n"},
	})
	tests := []struct {
		name   string
		hook   int
		want   conmonCmd
		wantOK bool
	}{
		{"hook under crun under conmon", 300, conmonCmd{id, "pweb"}, true},
		{"conmon of another container", 520, conmonCmd{}, false},
		{"no conmon above", 600, conmonCmd{}, false},
		{"no such process", 999, conmonCmd{}, false},
	}
	for _, tt := range tests {
		got, ok := p.conmonOf(tt.hook, id)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("%s: conmonOf(%d) = %+v, %v; want %+v, %v", tt.name, tt.hook, got, ok, tt.want, tt.wantOK)
		}
	}
	if cg, err := p.cgroupOf(400); err != nil || cg != "/machine.slice/libpod-3f2a9c.scope/container" {
		t.Errorf("cgroupOf(400) = %q, %v", cg, err)
	}
	if _, err := p.cgroupOf(600); err == nil || !strings.Contains(err.Error(), "no cgroup2") {
		t.Errorf("cgroupOf on a cgroup v1 process: %v", err)
	}
	if _, err := p.cgroupOf(999); err == nil {
		t.Error("cgroupOf of a missing process succeeded")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		onError string
		ok      bool
	}{
		{nil, "pass", true},
		{[]string{"--on-error=fail"}, "fail", true},
		{[]string{"--on-error", "pass", "--timeout=500ms", "--socket=/run/x"}, "pass", true},
		{[]string{"--on-error=ignore"}, "", false},
		{[]string{"--timeout=0s"}, "", false},
		{[]string{"--timeout=2h"}, "", false},
		{[]string{"--bogus"}, "", false},
		{[]string{"extra"}, "", false},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args)
		if (err == nil) != tt.ok || (tt.ok && o.onError != tt.onError) {
			t.Errorf("parseFlags(%q) = %+v, %v; want ok=%v on-error %q", tt.args, o, err, tt.ok, tt.onError)
		}
	}
}
