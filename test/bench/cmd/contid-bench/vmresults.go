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
