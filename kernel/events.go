package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// opNames names the operation codes of EventDenied (OP_* in contid.h).
var opNames = map[uint32]string{
	1:  "bpf",
	2:  "bpf_map",
	3:  "bpf_prog",
	4:  "netlink_send",
	5:  "task_alloc",
	6:  "unlink",
	7:  "rename",
	8:  "rmdir",
	9:  "umount",
	10: "kill",
	11: "ptrace",
	12: "setrlimit",
	13: "sched",
	14: "open_write",
	15: "bpf_prog_load",
	16: "module_load",
	17: "truncate",
	18: "mount",
	19: "oom_score_adj",
}

// pollInterval bounds how long ReadEvent waits before it looks at ctx and
// the lost counter again.
const pollInterval = 200 * time.Millisecond

// ReadEvent blocks for the next ring buffer event.
func (b *BPF) ReadEvent(ctx context.Context) (Event, error) {
	b.readMu.Lock()
	defer b.readMu.Unlock()

	if b.ring == nil {
		rd, err := ringbuf.NewReader(b.maps["events"])
		if err != nil {
			return Event{}, fmt.Errorf("open ring buffer: %w", err)
		}
		b.ring = rd
	}
	for {
		if ev, ok := b.lostEvent(); ok {
			return ev, nil
		}
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		b.ring.SetDeadline(time.Now().Add(pollInterval))
		rec, err := b.ring.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return Event{}, fmt.Errorf("read ring buffer: %w", err)
		}
		return decodeEvent(rec.RawSample)
	}
}

// lostEvent reports the growth of the kernel's failed-reservation counter
// since the last look as one EventLost.
func (b *BPF) lostEvent() (Event, bool) {
	var lost uint64
	if err := b.maps["events_lost"].Lookup(uint32(0), &lost); err != nil || lost <= b.lostSeen {
		return Event{}, false
	}
	n := lost - b.lostSeen
	b.lostSeen = lost
	return Event{Kind: EventLost, Count: n}, true
}

func decodeEvent(raw []byte) (Event, error) {
	var re rawEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &re); err != nil {
		return Event{}, fmt.Errorf("decode event (%d bytes): %w", len(raw), err)
	}
	ev := Event{
		Kind:           EventKind(re.Kind),
		CgroupID:       re.CgroupID,
		PID:            re.PID,
		TID:            re.TID,
		Op:             opNames[re.Op],
		Count:          re.Count,
		Boottime:       time.Duration(re.BoottimeNS),
		ParentCgroupID: re.ParentCgroupID,
	}
	ev.Tag.Chain = chainOf(re.ID, re.Depth, &re.Chain)
	ev.Tag.Flags = contidFlags(re.Flags)
	if i := bytes.IndexByte(re.Name[:], 0); i >= 0 {
		ev.Name = string(re.Name[:i])
	} else {
		ev.Name = string(re.Name[:])
	}
	return ev, nil
}
