package main

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
)

// bpfObjNameMax is BPF_OBJ_NAME_LEN (16) less the terminating NUL.
const bpfObjNameMax = 15

// loadedPrograms counts the BPF programs in the kernel with one of the
// given names, whoever loaded them. Configuration B must run with none of
// contid's fork programs; if another contid (a test, a daemon) has one
// attached the baseline is not clean, and the report says so.
func loadedPrograms(names ...string) (int, error) {
	want := map[string]bool{}
	for _, name := range names {
		want[name] = true
		// The kernel keeps BPF_OBJ_NAME_LEN-1 characters of a name
		// (contid_task_alloc is contid_task_all); cilium/ebpf restores
		// the full one from BTF only where the kernel gives func info.
		if len(name) > bpfObjNameMax {
			want[name[:bpfObjNameMax]] = true
		}
	}
	n := 0
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err == nil && want[info.Name] {
			n++
		}
	}
}
