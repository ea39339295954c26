package journal

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel/audit"
)

// KernelLog writes user records into the kernel audit log;
// *audit.Control implements it.
type KernelLog interface {
	WriteUser(typ auparse.AuditMessageType, text string) error
}

var _ KernelLog = (*audit.Control)(nil)

// Recorder logs contid's own operations twice: to the kernel audit log as
// VIRT_* user records in the field layout of the kernel series (so
// `ausearch -m VIRT_MACHINE_ID` finds them next to everything else
// auditd keeps), and to the journal with a catalogued MESSAGE_ID. Both
// are attempted even if one fails.
type Recorder struct {
	kernel  KernelLog
	journal Sender

	mu sync.Mutex
}

// NewRecorder writes to k and s; either may be nil to skip that log.
func NewRecorder(k KernelLog, s Sender) *Recorder {
	return &Recorder{kernel: k, journal: s}
}

// Op names as the kernel series spelled them.
const (
	opSet  = "set"
	opDrop = "drop"
	opDeny = "deny"
	// opAllow: an operation enforcing mode refuses other tagged
	// processes, let through by the container's own exception.
	opAllow = "allow"
)

// record is one operation, rendered to both logs.
type record struct {
	typ       auparse.AuditMessageType
	op        string
	chain     contid.Chain
	old       contid.Chain
	opid      uint32
	caller    contid.Chain // the container the caller runs in, if any
	labels    contid.Labels
	err       error
	operation string // what a denial refused, or an exception let through
	// suppressed: denials of the container not recorded one by one
	// (over its budget) since the last entry that said so.
	suppressed uint64

	messageID string
	message   string
	priority  uint64
}

// RecordTag logs a tag attempt by callerPID for chain (the ID granted or
// asked for; empty when the caller let contidd allocate and it failed
// before allocating), with the container's labels (for a refusal, those
// asked for). callerChain is the container the caller itself runs
// in, if any: a refused attempt from inside a container is something that
// container did, and `journalctl AUDIT_CALLER_CONTAINER_ID=N` finds it.
// old is the chain the target had before, if any. tagErr nil means
// granted.
func (r *Recorder) RecordTag(callerPID uint32, callerChain, chain, old contid.Chain, l contid.Labels, tagErr error) error {
	name := l.Name
	rec := record{typ: audit.TypeVirtMachineID, op: opSet, chain: chain, old: old, opid: callerPID, caller: callerChain,
		labels: l, err: tagErr}
	if tagErr == nil {
		rec.messageID, rec.priority = MessageTagGranted, 6
		rec.message = "tag granted: " + describe(chain, name) + " for pid " + u32(callerPID)
	} else {
		rec.messageID, rec.priority = MessageTagRefused, 5
		rec.message = "tag refused: " + describe(chain, name) + " for pid " + u32(callerPID)
		if len(callerChain) > 0 {
			rec.message += " (in container " + callerChain.String() + ")"
		}
		rec.message += ": " + tagErr.Error()
	}
	return r.write(&rec)
}

// RecordCreate logs a container ID coming into use: a first tag, or the
// kernel's autotag of a new cgroup. ownerPID is 0 for an autotag.
func (r *Recorder) RecordCreate(ownerPID uint32, chain contid.Chain, l contid.Labels) error {
	rec := record{typ: audit.TypeVirtCreate, op: opSet, chain: chain, opid: ownerPID, labels: l,
		messageID: MessageContainerCreated, priority: 6,
		message: "container created: " + describe(chain, l.Name)}
	if l.Unit != "" {
		rec.message += " unit " + l.Unit
	}
	return r.write(&rec)
}

// RecordDrop logs a container whose last process exited.
func (r *Recorder) RecordDrop(chain contid.Chain, l contid.Labels) error {
	rec := record{typ: audit.TypeVirtDestroy, op: opDrop, chain: chain, labels: l,
		messageID: MessageContainerExited, priority: 6,
		message: "container exited: " + describe(chain, l.Name)}
	return r.write(&rec)
}

// RecordDenial logs an enforcing-mode refusal: pid, of the container
// chain (labelled l, as far as the registry knows it), attempted
// operation (e.g. "bpf_map", "audit_set", "kill"). suppressed is how many
// more of the container's refusals went unrecorded one by one since the
// last entry that counted them (AUDIT_DENIALS_SUPPRESSED, written when
// not 0).
func (r *Recorder) RecordDenial(chain contid.Chain, l contid.Labels, pid uint32, operation string, suppressed uint64) error {
	rec := record{typ: audit.TypeVirtMachineID, op: opDeny, chain: chain, labels: l, opid: pid, operation: operation,
		err: errors.New("denied " + operation), suppressed: suppressed,
		messageID: MessageTamperDenied, priority: 4,
		message: "tamper denied: pid " + u32(pid) + " of " + describe(chain, l.Name) + " attempted " + operation}
	if suppressed > 0 {
		rec.message += " (and " + strconv.FormatUint(suppressed, 10) + " more denials not recorded one by one)"
	}
	return r.write(&rec)
}

// RecordDenialsSuppressed logs n refusals of the container chain that its
// budget kept from being recorded one by one, and that no recorded
// denial has counted yet: the summary that keeps a flood's tail from
// going unsaid.
func (r *Recorder) RecordDenialsSuppressed(chain contid.Chain, l contid.Labels, n uint64) error {
	rec := record{typ: audit.TypeVirtMachineID, op: opDeny, chain: chain, labels: l, suppressed: n,
		err:       errors.New("denials not recorded one by one"),
		messageID: MessageDenialsSuppressed, priority: 4,
		message: describe(chain, l.Name) + ": " + strconv.FormatUint(n, 10) + " more denials not recorded one by one"}
	return r.write(&rec)
}

// RecordGrantUse logs the first time pid, of the container chain, did
// operation (e.g. "bpf_prog_load", "module_request") that enforcing mode
// let through only because the container was tagged with AllowBPF or
// AllowModules: written like a denial, with op=allow and res=success.
func (r *Recorder) RecordGrantUse(chain contid.Chain, l contid.Labels, pid uint32, operation string) error {
	rec := record{typ: audit.TypeVirtMachineID, op: opAllow, chain: chain, labels: l, opid: pid, operation: operation,
		messageID: MessageGrantUsed, priority: 5,
		message: "exception used: pid " + u32(pid) + " of " + describe(chain, l.Name) + " was allowed " + operation +
			" by its container's own grant"}
	return r.write(&rec)
}

func (r *Recorder) write(rec *record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if r.kernel != nil {
		if err := r.kernel.WriteUser(rec.typ, rec.kernelText()); err != nil {
			errs = append(errs, err)
		}
	}
	if r.journal != nil {
		var e Entry
		rec.journalEntry(&e)
		if err := r.journal.Send(&e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// kernelText is the record body: "virt=contid op=set contid=4,^2,^1
// old-contid=-1 opid=1234 vm="web" res=success" (docs/DESIGN.md).
func (rec *record) kernelText() string {
	var b strings.Builder
	b.WriteString("virt=contid op=")
	b.WriteString(rec.op)
	b.WriteString(" contid=")
	b.WriteString(chainOrUnknown(rec.chain, "?"))
	b.WriteString(" old-contid=")
	b.WriteString(chainOrUnknown(rec.old, "-1"))
	b.WriteString(" opid=")
	b.WriteString(u32(rec.opid))
	if len(rec.caller) > 0 {
		b.WriteString(" caller-contid=")
		b.WriteString(rec.caller.String())
	}
	b.WriteString(" vm=")
	if rec.labels.Name == "" {
		b.WriteString("?")
	} else {
		b.WriteString(encodeValue(rec.labels.Name))
	}
	if rec.operation != "" {
		b.WriteString(" operation=")
		b.WriteString(encodeValue(rec.operation))
	}
	if rec.suppressed > 0 {
		b.WriteString(" suppressed=")
		b.WriteString(strconv.FormatUint(rec.suppressed, 10))
	}
	if rec.err == nil {
		b.WriteString(" res=success")
	} else {
		b.WriteString(" res=failed")
	}
	return b.String()
}

func (rec *record) journalEntry(e *Entry) {
	e.Add("MESSAGE_ID", rec.messageID)
	e.Add("MESSAGE", rec.message)
	e.AddUint("PRIORITY", rec.priority)
	trailIdentity(e)
	if len(rec.chain) > 0 {
		e.AddUint("AUDIT_CONTAINER_ID", uint64(rec.chain[0]))
		for _, id := range rec.chain {
			e.AddUint("AUDIT_CONTAINER_WITHIN", uint64(id))
		}
		e.Add("AUDIT_CONTAINER_CHAIN", rec.chain.String())
	}
	if len(rec.old) > 0 {
		e.Add("AUDIT_OLD_CONTAINER_CHAIN", rec.old.String())
	}
	addLabels(e, &rec.labels)
	e.Add("AUDIT_OP", rec.op)
	if rec.opid != 0 {
		e.AddUint("AUDIT_OPID", uint64(rec.opid))
	}
	if len(rec.caller) > 0 {
		e.AddUint("AUDIT_CALLER_CONTAINER_ID", uint64(rec.caller[0]))
		e.Add("AUDIT_CALLER_CONTAINER_CHAIN", rec.caller.String())
	}
	if rec.operation != "" {
		e.Add("AUDIT_OPERATION", rec.operation)
	}
	if rec.suppressed > 0 {
		e.AddUint("AUDIT_DENIALS_SUPPRESSED", rec.suppressed)
	}
	if rec.err == nil {
		e.Add("AUDIT_RESULT", "success")
	} else {
		e.Add("AUDIT_RESULT", "failed")
		e.Add("AUDIT_ERROR", rec.err.Error())
	}
}

func describe(chain contid.Chain, name string) string {
	s := "container " + chainOrUnknown(chain, "(unallocated)")
	if name != "" {
		s += " (" + name + ")"
	}
	return s
}

func chainOrUnknown(c contid.Chain, unknown string) string {
	if len(c) == 0 {
		return unknown
	}
	return c.String()
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// encodeValue renders an untrusted string the way audit tools expect:
// quoted when it is plain printable ASCII without quotes or spaces,
// upper-case hex otherwise (what the kernel's audit_log_untrustedstring
// and libaudit's audit_encode_nv_string do), so a name cannot forge
// extra fields.
func encodeValue(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\'' {
			plain = false
			break
		}
	}
	if plain {
		return `"` + s + `"`
	}
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, digits[s[i]>>4], digits[s[i]&15])
	}
	return string(b)
}
