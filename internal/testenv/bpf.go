package testenv

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// RequireBPF skips the test unless it runs as root on a kernel where
// contid's tracking mode works: a cgroup2 mount, kernel BTF, and a
// BTF-typed tracepoint program (tp_btf) that loads and attaches.
func RequireBPF(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if !haveCgroup2() {
		Missing(t, "skipped: no cgroup2 mount in /proc/self/mountinfo")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		Missing(t, "skipped: kernel BTF unavailable: %v", err)
	}
	if err := tryTPBTF(); err != nil {
		Missing(t, "skipped: a tp_btf program cannot load here: %v", err)
	}
}

func haveCgroup2() bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if _, post, ok := strings.Cut(sc.Text(), " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			return true
		}
	}
	return false
}

func tryTPBTF() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "contid_gate",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "sched_process_fork",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return err
	}
	return l.Close()
}
