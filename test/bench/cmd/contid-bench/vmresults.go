package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/contid/contid/kernel"
)

// vmResults is the part of an enforcing run's results.json (written in
// the VM tier by test/vm/guest/bench.sh) that a host run carries over.
type vmResults struct {
	Mode        string              `json:"mode"`
	Machine     machine             `json:"machine"`
	NotMeasured map[string]string   `json:"not_measured"`
	Notes       map[string]string   `json:"notes"`
	Details     map[string]any      `json:"details"`
	Figures     map[string]*float64 `json:"-"`
}

// notMeasuredVM is what the table says where the VM tier has not run.
const notMeasuredVM = "not measured: run make test-vm"

// foldVMResults copies the enforcing fork figures of the VM tier's last
// run into rep, with where and when they were measured. This host cannot
// load LSM programs, so those figures can only come from there; when the
// file is missing or unusable the rows say why and stay empty.
func foldVMResults(rep *report, path string) {
	keys := forkKeysFor(kernel.ModeEnforcing)
	none := func(why string) {
		for _, k := range keys.all() {
			rep.unmeasured(k, why)
		}
	}
	if path == "" {
		none(notMeasuredVM)
		return
	}
	vm, st, err := readVMResults(path)
	if errors.Is(err, os.ErrNotExist) {
		progress("VM tier: no %s, the enforcing figures stay empty", path)
		none(notMeasuredVM)
		rep.detail(keys.detail, map[string]any{"source": "none: " + path + " does not exist (make test-vm writes it)"})
		return
	}
	if err != nil {
		progress("VM tier results: %v", err)
		none(err.Error())
		return
	}
	source := vmSource(vm, st.ModTime())
	for _, k := range keys.all() {
		if v := vm.Figures[k]; v != nil {
			rep.set(k, *v)
			continue
		}
		why := vm.NotMeasured[k]
		if why == "" {
			why = "no value"
		}
		rep.unmeasured(k, "VM run: "+why)
	}
	note := source
	if n := vm.Notes[keys.ratio]; n != "" {
		note += "; " + n
	}
	rep.annotate(keys.ratio, note)
	d := map[string]any{
		"source":        source,
		"file":          path,
		"file_modified": st.ModTime().UTC().Format(time.RFC3339),
		"guest":         vm.Machine,
		"figures":       vm.Details[keys.detail],
	}
	for _, k := range []string{"phase_error_fork", "warning_busy_machine"} {
		if v, ok := vm.Details[k]; ok {
			d[k] = v
		}
	}
	rep.detail(keys.detail, d)
	if v := vm.Figures[keys.ratio]; v != nil {
		progress("VM tier: %s %.4f (%s)", keys.ratio, *v, source)
	} else {
		progress("VM tier: %s not measured there (%s): %s", keys.ratio, source, vm.NotMeasured[keys.ratio])
	}
}

func readVMResults(path string) (*vmResults, os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading VM results: %w", err)
	}
	var vm vmResults
	if err := json.Unmarshal(b, &vm); err != nil {
		return nil, nil, fmt.Errorf("VM results %s: %w", path, err)
	}
	// The figures are top-level keys next to the descriptive ones.
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, nil, fmt.Errorf("VM results %s: %w", path, err)
	}
	if vm.Mode != kernel.ModeEnforcing {
		return nil, nil, fmt.Errorf("VM results %s: mode %q, want an enforcing run (contid-bench -mode enforcing)", path, vm.Mode)
	}
	vm.Figures = map[string]*float64{}
	for _, k := range forkKeysFor(kernel.ModeEnforcing).all() {
		raw, ok := all[k]
		if !ok {
			continue
		}
		var v *float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("VM results %s: %s: %w", path, k, err)
		}
		vm.Figures[k] = v
	}
	return &vm, st, nil
}

// vmSource says where a VM figure comes from. Under qemu TCG the guest
// sees a CPU named "QEMU TCG CPU ..."; anything else is shown as the
// guest reported it, never guessed.
func vmSource(vm *vmResults, mod time.Time) string {
	accel := "cpu " + vm.Machine.CPUModel
	if strings.Contains(vm.Machine.CPUModel, "TCG") {
		accel = "TCG"
	}
	return fmt.Sprintf("VM tier, guest kernel %s, %s, measured %s (file %s)",
		vm.Machine.Kernel, accel, vm.Machine.Date, mod.UTC().Format(time.RFC3339))
}

// ociKeys are the container start figures the VM tier measures (podman
// needs systemd as PID 1 for its systemd cgroup manager, which this host
// does not run): test/vm/guest/ocibench.sh writes them.
var ociKeys = []string{"oci_hook_start_ms", "oci_hook_start_ms_without", "oci_hook_start_ratio"}

// ociResults is test/vm/out/bench-oci.json.
type ociResults struct {
	With    *float64  `json:"oci_hook_start_ms"`
	Without *float64  `json:"oci_hook_start_ms_without"`
	Runs    int       `json:"runs"`
	WithMS  []float64 `json:"with_ms"`
	NoneMS  []float64 `json:"without_ms"`
	How     string    `json:"how"`
	Kernel  string    `json:"kernel"`
	CPU     string    `json:"cpu"`
	Date    string    `json:"date"`
}

// foldOCIResults copies the VM tier's last container start figures into
// rep. The ratio is worked out again from the two medians rather than
// taken on trust, and a file whose runs do not give its medians is
// refused.
func foldOCIResults(rep *report, path string) {
	none := func(why string) {
		for _, k := range ociKeys {
			rep.unmeasured(k, why)
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		none(notMeasuredVM)
		return
	}
	var r ociResults
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err == nil {
		err = r.check()
	}
	if err != nil {
		progress("VM tier OCI start figures %s: %v", path, err)
		none(fmt.Sprintf("VM results %s: %v", path, err))
		return
	}
	rep.set("oci_hook_start_ms", *r.With)
	rep.set("oci_hook_start_ms_without", *r.Without)
	rep.set("oci_hook_start_ratio", *r.With / *r.Without)
	rep.annotate("oci_hook_start_ratio", fmt.Sprintf("VM tier, guest kernel %s, %s, measured %s, median of %d runs each way", r.Kernel, r.CPU, r.Date, r.Runs))
	rep.detail("oci_hook_start", map[string]any{"file": path, "how": r.How, "with_ms": r.WithMS, "without_ms": r.NoneMS})
	progress("VM tier: oci_hook_start_ms %.0f, without %.0f", *r.With, *r.Without)
}

func (r ociResults) check() error {
	switch {
	case r.With == nil || r.Without == nil:
		return errors.New("no medians")
	case r.Runs < 1 || len(r.WithMS) != r.Runs || len(r.NoneMS) != r.Runs:
		return fmt.Errorf("%d runs announced, %d and %d given", r.Runs, len(r.WithMS), len(r.NoneMS))
	case *r.Without <= 0:
		return fmt.Errorf("median without the hook %g ms", *r.Without)
	case summarize(r.WithMS).Median != *r.With || summarize(r.NoneMS).Median != *r.Without:
		return fmt.Errorf("medians %g and %g do not match the runs (%g, %g)", *r.With, *r.Without, summarize(r.WithMS).Median, summarize(r.NoneMS).Median)
	}
	return nil
}
