package kernel

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

const (
	securityFS = "/sys/kernel/security"
	lsmFile    = securityFS + "/lsm"
)

// Probe decides whether this kernel can run contid in enforcing mode:
// the BPF LSM must be in the active list AND an LSM program must actually
// load and attach (lockdown, a missing CONFIG_BPF_LSM or a restricted VM
// can each refuse it). Anything short of that is tracking mode, with the
// reason in words a person can act on.
func Probe() (contid.Mode, string) {
	active, err := activeLSMs()
	if err != nil {
		return contid.ModeTracking, fmt.Sprintf("cannot tell whether the BPF LSM is active: %v", err)
	}
	if reason := lsmListReason(active); reason != "" {
		return contid.ModeTracking, reason
	}
	if err := tryLSMProgram(); err != nil {
		return contid.ModeTracking, fmt.Sprintf("loading an LSM program failed: %v", err)
	}
	return contid.ModeEnforcing, fmt.Sprintf("BPF LSM active (%s) and an LSM program attached", active)
}

// lsmListReason explains why an active-LSM list rules enforcing mode out,
// or returns "" when "bpf" is in it.
func lsmListReason(active string) string {
	for _, name := range strings.Split(active, ",") {
		if name == "bpf" {
			return ""
		}
	}
	return fmt.Sprintf("BPF LSM not active: %s is %q (boot with lsm=%s,bpf)", lsmFile, active, active)
}

// activeLSMs reads the kernel's active LSM list, mounting securityfs
// first if nothing is mounted there.
func activeLSMs() (string, error) {
	data, err := os.ReadFile(lsmFile)
	if errors.Is(err, os.ErrNotExist) {
		if merr := unix.Mount("securityfs", securityFS, "securityfs", 0, ""); merr != nil {
			return "", fmt.Errorf("%s is missing and mounting securityfs failed: %w", lsmFile, merr)
		}
		data, err = os.ReadFile(lsmFile)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// tryLSMProgram loads and attaches the smallest possible LSM program and
// removes it again.
func tryLSMProgram() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "contid_probe",
		Type:       ebpf.LSM,
		AttachType: ebpf.AttachLSMMac,
		AttachTo:   "file_permission",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return unwrapSyscall(err)
	}
	defer prog.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach: %w", unwrapSyscall(err))
	}
	return l.Close()
}

// unwrapSyscall shortens cilium/ebpf's layered messages to the errno when
// there is one: "operation not permitted" is what a person needs to read.
func unwrapSyscall(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
