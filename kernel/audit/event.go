package audit

import (
	"strconv"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
)

// Event is one reassembled audit event: every record the kernel emitted
// under one serial, with the process that caused it and its container.
//
// An Event and the strings in it are valid only during the Handler call
// that receives it; the reader reuses its memory for the next event.
type Event struct {
	Serial  uint32
	Time    time.Time
	Records []Record

	// PID and PPID come from the first record that names them; HasPID is
	// false for events no process caused (e.g. configuration changes
	// logged by the kernel itself).
	PID, PPID uint32
	HasPID    bool

	// Container is the innermost ID of the process at the event's time,
	// or contid.Unset when it was not tagged or the answer was not
	// certain. Attribution says how it was found.
	Container   contid.ID
	Attribution contid.Attribution
	// Candidates, when Attribution is AmbiguousPID, are the containers
	// the event may be from; none of them is certain, so Container stays
	// Unset.
	Candidates contid.Candidates

	fields []Field
}

// Tagged reports whether the event belongs to a container.
func (e *Event) Tagged() bool {
	return e.Container != contid.Unset && (e.Attribution == contid.LiveProcess || e.Attribution == contid.ExitedProcess)
}

// Ambiguous reports whether the event's PID was reused too close to it to
// tell which process made it (see Candidates).
func (e *Event) Ambiguous() bool { return e.Attribution == contid.AmbiguousPID }

// Get returns the first value of key across the event's records, in order.
func (e *Event) Get(key string) (string, bool) {
	for i := range e.Records {
		if v, ok := e.Records[i].Get(key); ok {
			return v, true
		}
	}
	return "", false
}

// Record returns the first record of the given type.
func (e *Event) Record(typ auparse.AuditMessageType) (*Record, bool) {
	for i := range e.Records {
		if e.Records[i].Type == typ {
			return &e.Records[i], true
		}
	}
	return nil, false
}

// Syscall is the name of the event's system call ("execve"), or "" when
// the event has no SYSCALL record.
func (e *Event) Syscall() string {
	r, ok := e.Record(auparse.AUDIT_SYSCALL)
	if !ok {
		return ""
	}
	arch, _ := r.Get("arch")
	nr, _ := r.Get("syscall")
	return syscallName(arch, nr)
}

// build fills e from the reassembled messages of one serial, reusing e's
// memory. It reports false when no record could be parsed.
func (e *Event) build(p *parser, msgs []*auparse.AuditMessage) bool {
	p.reset()
	e.Records = e.Records[:0]
	e.fields = e.fields[:0]
	e.PID, e.PPID, e.HasPID = 0, 0, false
	e.Container, e.Attribution, e.Candidates = contid.Unset, contid.Unattributed, contid.Candidates{}

	// Fields of all records share one slice; record i owns a window of
	// it, fixed up below once the slice stops growing.
	type span struct{ from, to int }
	var spansBuf [16]span
	spans := spansBuf[:0]
	for _, m := range msgs {
		body, ok := m.Payload.(int)
		if !ok || body > len(m.RawData) {
			continue
		}
		from := len(e.fields)
		e.fields = p.fields(m.RecordType, m.RawData[body:], e.fields)
		spans = append(spans, span{from, len(e.fields)})
		e.Records = append(e.Records, Record{Type: m.RecordType})
		if len(e.Records) == 1 {
			e.Serial = m.Sequence
			e.Time = m.Timestamp
		}
	}
	if len(e.Records) == 0 {
		return false
	}
	for i := range e.Records {
		e.Records[i].Fields = e.fields[spans[i].from:spans[i].to:spans[i].to]
	}
	for i := range e.Records {
		r := &e.Records[i]
		if v, ok := r.Get("pid"); ok && !e.HasPID {
			if pid, err := strconv.ParseUint(v, 10, 32); err == nil && pid != 0 {
				e.PID, e.HasPID = uint32(pid), true
			}
		}
		if v, ok := r.Get("ppid"); ok && e.PPID == 0 {
			if ppid, err := strconv.ParseUint(v, 10, 32); err == nil {
				e.PPID = uint32(ppid)
			}
		}
	}
	return true
}

// TypeNames appends the record type names ("SYSCALL", "EXECVE", ...) to
// dst, each once, in the order they appear.
func (e *Event) TypeNames(dst []string) []string {
outer:
	for i := range e.Records {
		name := e.Records[i].Type.String()
		for _, n := range dst {
			if n == name {
				continue outer
			}
		}
		dst = append(dst, name)
	}
	return dst
}
