package main

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
)

// loadedPrograms counts the BPF programs in the kernel with the given
// name, whoever loaded them. Configuration B must run with none of
// contid's fork program; if another contid (a test, a daemon) has one
// attached the baseline is not clean, and the report says so.
func loadedPrograms(name string) (int, error) {
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
		if err == nil && info.Name == name {
			n++
		}
	}
}
