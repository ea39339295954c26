package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/registry"
)

// maxStateBytes bounds what is read of the state on stdin and of the
// bundle's config.json: a runtime's state is a few hundred bytes, a
// config.json tens of KiB; the bound only keeps a broken input from
// holding the container's start.
const maxStateBytes = 4 << 20

// ociState is the part of the OCI runtime state a hook receives on stdin
// that the hook uses.
type ociState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	PID         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

// ociConfig is the part of the bundle's config.json the hook uses.
type ociConfig struct {
	Annotations map[string]string `json:"annotations"`
	Linux       *struct {
		CgroupsPath string `json:"cgroupsPath"`
	} `json:"linux"`
	Root *struct {
		Path string `json:"path"`
	} `json:"root"`
}

// parseState decodes the state a runtime passes on stdin and checks what
// the hook cannot do without.
func parseState(r io.Reader) (ociState, error) {
	var st ociState
	b, err := io.ReadAll(io.LimitReader(r, maxStateBytes+1))
	if err != nil {
		return st, fmt.Errorf("read the OCI state from stdin: %w", err)
	}
	if len(b) > maxStateBytes {
		return st, fmt.Errorf("the OCI state on stdin is larger than %d bytes", maxStateBytes)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode the OCI state on stdin: %w", err)
	}
	switch {
	case st.ID == "":
		return st, errors.New("the OCI state has no container id")
	case st.PID <= 0:
		return st, fmt.Errorf("the OCI state of container %s has no process (pid %d): the hook runs at createRuntime, once the container process exists", st.ID, st.PID)
	}
	return st, nil
}

// readConfig reads the bundle's config.json; a bundle without one gives
// an empty config.
func readConfig(bundle string) (ociConfig, error) {
	var cfg ociConfig
	if bundle == "" {
		return cfg, nil
	}
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("open the bundle's config.json: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return cfg, fmt.Errorf("read the bundle's config.json: %w", err)
	}
	if len(b) > maxStateBytes {
		return cfg, fmt.Errorf("the bundle's config.json is larger than %d bytes", maxStateBytes)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("decode the bundle's config.json: %w", err)
	}
	return cfg, nil
}

// annotation looks a key up in the state's annotations first (what the
// runtime reports), then in config.json's.
func annotation(st ociState, cfg ociConfig, key string) string {
	if v := st.Annotations[key]; v != "" {
		return v
	}
	return cfg.Annotations[key]
}

// Annotations the hook reads. Podman marks its containers with
// io.container.manager=libpod; CRI-O and containerd's CRI name the
// container and its image in theirs.
var (
	managerAnnotations = []string{"io.container.manager"}
	nameAnnotations    = []string{"io.kubernetes.cri-o.Name", "io.kubernetes.container.name"}
	imageAnnotations   = []string{
		"io.kubernetes.cri-o.ImageName", "io.kubernetes.cri.image-name",
		"org.opencontainers.image.ref.name", "org.opencontainers.image.base.name",
	}
)

// conmonCmd is what a conmon ancestor of the hook said about the
// container: podman starts conmon with the container's ID (-c) and its
// name (-n), and conmon runs the runtime that runs the hook.
type conmonCmd struct{ id, name string }

// parseConmon reads conmon's argument vector (NUL-separated, as in
// /proc/PID/cmdline); ok is false for any other program.
func parseConmon(cmdline []byte) (conmonCmd, bool) {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || path.Base(args[0]) != "conmon" {
		return conmonCmd{}, false
	}
	var c conmonCmd
	for i := 1; i < len(args); i++ {
		k, v, inline := strings.Cut(args[i], "=")
		if !inline {
			if i+1 >= len(args) {
				break
			}
			v = args[i+1]
		}
		var dst *string
		switch k {
		case "-c", "--cid":
			dst = &c.id
		case "-n", "--name":
			dst = &c.name
		default:
			continue
		}
		*dst = v
		if !inline {
			i++
		}
	}
	return c, c.id != ""
}

// procReader reads /proc; tests point it elsewhere.
type procReader struct{ root string }

// parent returns the parent PID of pid from /proc/PID/stat.
func (p procReader) parent(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold anything, ')' too:
	// the fields that follow start after the last one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat of process %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed stat of process %d", pid)
	}
	return strconv.Atoi(f[1])
}

// maxAncestors bounds the walk up from the hook to conmon: the runtime
// runs the hook, conmon runs the runtime, so two steps suffice; a few
// more allow for a wrapper in between.
const maxAncestors = 6

// conmonOf finds the conmon ancestor of process pid that runs container
// id; ok is false when there is none.
func (p procReader) conmonOf(pid int, id string) (conmonCmd, bool) {
	for range maxAncestors {
		ppid, err := p.parent(pid)
		if err != nil || ppid <= 1 {
			return conmonCmd{}, false
		}
		pid = ppid
		b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "cmdline"))
		if err != nil {
			return conmonCmd{}, false
		}
		if c, ok := parseConmon(b); ok {
			// A conmon of another container (impossible for a child of
			// its runtime, but cheap to rule out) names nothing here.
			if c.id != id {
				return conmonCmd{}, false
			}
			return c, true
		}
	}
	return conmonCmd{}, false
}

// cgroupOf reads the cgroup2 path of process pid ("0::/path").
func (p procReader) cgroupOf(pid int) (string, error) {
	f, err := os.Open(filepath.Join(p.root, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", fmt.Errorf("read the cgroup of the container process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if cg, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return cg, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read the cgroup of the container process %d: %w", pid, err)
	}
	return "", fmt.Errorf("the container process %d is in no cgroup2 cgroup (is the unified hierarchy mounted?)", pid)
}

// systemdScope turns a systemd cgroupsPath ("machine.slice:libpod:ID",
// as runc and crun take it with the systemd cgroup manager) into the
// cgroup of the scope systemd creates for it; ok is false for a plain
// cgroupfs path.
func systemdScope(cgroupsPath string) (string, bool) {
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || strings.Contains(cgroupsPath, "/") || parts[2] == "" {
		return "", false
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	unit := name
	if !strings.HasSuffix(name, ".scope") && !strings.HasSuffix(name, ".slice") {
		unit = name + ".scope"
		if prefix != "" {
			unit = prefix + "-" + unit
		}
	}
	if slice == "" {
		slice = "system.slice"
	}
	return slicePath(slice) + "/" + unit, true
}

// slicePath expands a slice into its cgroup path the way systemd nests
// slices: a-b.slice lives in a.slice.
func slicePath(slice string) string {
	if slice == "-.slice" {
		return ""
	}
	base := strings.TrimSuffix(slice, ".slice")
	var p strings.Builder
	for i := range len(base) {
		if base[i] == '-' {
			p.WriteString("/" + base[:i] + ".slice")
		}
	}
	p.WriteString("/" + slice)
	return p.String()
}

// targetCgroup picks the cgroup to tag: the scope the systemd cgroup
// manager made for the container when the process runs in it or below
// (crun may start the payload in a child cgroup of the scope, and the
// scope is what the kernel autotagged), else the process's own cgroup.
func targetCgroup(procCgroup string, cfg ociConfig) string {
	if cfg.Linux == nil {
		return procCgroup
	}
	if scope, ok := systemdScope(cfg.Linux.CgroupsPath); ok {
		if procCgroup == scope || strings.HasPrefix(procCgroup, scope+"/") {
			return scope
		}
	}
	return procCgroup
}

// rootDirectory is the image of a container run from a root directory
// rather than from an image (`podman run --rootfs DIR`, runc with a
// bundle's rootfs): that directory, as config.json's root.path gives it
// (relative to the bundle when not absolute). A root under
// containers/storage is the mount of an image's layers, which names no
// image, so it gives none; neither does a config.json without a root.
func rootDirectory(st ociState, cfg ociConfig) string {
	if cfg.Root == nil || cfg.Root.Path == "" {
		return ""
	}
	p := cfg.Root.Path
	if !filepath.IsAbs(p) {
		if st.Bundle == "" {
			return ""
		}
		p = filepath.Join(st.Bundle, p)
	}
	p = filepath.Clean(p)
	if strings.Contains(p+"/", "/containers/storage/") {
		return ""
	}
	return p
}

// labels is what the hook tells contidd about a container.
func labels(st ociState, cfg ociConfig, conmon conmonCmd, haveConmon bool) client.TagOptions {
	o := client.TagOptions{Manager: "oci", ManagerID: st.ID}
	podman := haveConmon
	for _, k := range managerAnnotations {
		if annotation(st, cfg, k) == "libpod" {
			podman = true
		}
	}
	if podman {
		o.Manager = "podman"
	}
	if haveConmon && conmon.name != "" {
		o.Name = conmon.name
	}
	for _, k := range nameAnnotations {
		if o.Name == "" {
			o.Name = annotation(st, cfg, k)
		}
	}
	if o.Name == "" && !podman {
		// runc and crun run by hand take the container's name as its ID.
		o.Name = st.ID
	}
	for _, k := range imageAnnotations {
		if o.Image == "" {
			o.Image = annotation(st, cfg, k)
		}
	}
	if o.Image == "" {
		o.Image = rootDirectory(st, cfg)
	}
	// What contidd would refuse is left out, so that the rest still
	// names the container.
	if registry.ValidateName(o.Name) != nil {
		o.Name = ""
	}
	if registry.ValidateImage(o.Image) != nil {
		o.Image = ""
	}
	if registry.ValidateManagerID(o.ManagerID) != nil {
		o.ManagerID = ""
	}
	return o
}
