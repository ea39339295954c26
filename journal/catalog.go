package journal

// MESSAGE_IDs of contid's own journal entries. Each has an entry in
// units/contid.catalog, so `journalctl -x` explains it; the catalog test
// keeps the two in step.
const (
	// MessageTagGranted: a tag request succeeded (VIRT_MACHINE_ID res=success).
	MessageTagGranted = "24b709d2fb0647249c5540b55d6f7ef4"
	// MessageTagRefused: a tag request was refused (VIRT_MACHINE_ID res=failed).
	MessageTagRefused = "894ebcaf884f4f25a6e627389744bf4c"
	// MessageContainerCreated: a new container ID came into use (VIRT_CREATE).
	MessageContainerCreated = "f78c6f31f5904ddebf05d44bfa3779c2"
	// MessageContainerExited: a container's last process exited and its
	// ID was dropped (VIRT_DESTROY).
	MessageContainerExited = "ee153b99c71d42b29cb3d33d3ea19383"
	// MessageTamperDenied: enforcing mode refused a tagged process an
	// operation against contid or the audit configuration.
	MessageTamperDenied = "ccff256590f446b5b51e93fa502b92f3"
	// MessageDenialsSuppressed: refusals of one container that its
	// budget ([Enforce] DenialRecordBurst=, DenialRecordRate=) kept from
	// being recorded one by one, counted (AUDIT_DENIALS_SUPPRESSED) where
	// no recorded denial counted them.
	MessageDenialsSuppressed = "b4e76fe19bdf4f28bebb1b687f0836cd"
	// MessageGrantUsed: enforcing mode let a tagged process load a BPF
	// program or a kernel module because its container was tagged with
	// AllowBPF or AllowModules (first use per container).
	MessageGrantUsed = "4b65d40fd0504798aad020cbbfd3d5d9"
	// MessageEventsLost: audit events were lost before contidd could
	// write them.
	MessageEventsLost = "e5068ffe02f44e50a2584af3a2d2407a"
	// MessageAuditGap: while no contidd ran, the kernel emitted events
	// that nobody attributed.
	MessageAuditGap = "f0268bb5eee64a489f431e4690b01b7e"
)
