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

// opNames names the operations of EventDenied (enum denied_op in
// bpf/contid.h) as D-Bus and the journal show them. TestOpNamesCoverEnum
// checks, against the object's BTF, that each one has its name.
var opNames = map[contidDeniedOp]string{
	contidDeniedOpDENIED_BPF:             "bpf",
	contidDeniedOpDENIED_BPF_MAP:         "bpf_map",
	contidDeniedOpDENIED_BPF_PROG:        "bpf_prog",
	contidDeniedOpDENIED_NETLINK_SEND:    "netlink_send",
	contidDeniedOpDENIED_TASK_ALLOC:      "task_alloc",
	contidDeniedOpDENIED_UNLINK:          "unlink",
	contidDeniedOpDENIED_RENAME:          "rename",
	contidDeniedOpDENIED_RMDIR:           "rmdir",
	contidDeniedOpDENIED_UMOUNT:          "umount",
	contidDeniedOpDENIED_KILL:            "kill",
	contidDeniedOpDENIED_PTRACE:          "ptrace",
	contidDeniedOpDENIED_SETRLIMIT:       "setrlimit",
	contidDeniedOpDENIED_SCHED:           "sched",
	contidDeniedOpDENIED_OPEN_WRITE:      "open_write",
	contidDeniedOpDENIED_BPF_PROG_LOAD:   "bpf_prog_load",
	contidDeniedOpDENIED_MODULE_LOAD:     "module_load",
	contidDeniedOpDENIED_TRUNCATE:        "truncate",
	contidDeniedOpDENIED_MOUNT:           "mount",
	contidDeniedOpDENIED_OOM_SCORE_ADJ:   "oom_score_adj",
	contidDeniedOpDENIED_CGROUP_MOVE:     "cgroup_move",
	contidDeniedOpDENIED_USERMODE_HELPER: "usermode_helper",
	contidDeniedOpDENIED_MODULE_REQUEST:  "module_request",
	contidDeniedOpDENIED_FSFREEZE:        "fsfreeze",
	contidDeniedOpDENIED_FS_SHUTDOWN:     "fs_shutdown",
}

// pollInterval bounds how long ReadEvent waits before it looks at ctx and
// the lost counter again.
const pollInterval = 200 * time.Millisecond

// ReadEvent blocks for the next ring buffer event.
func (b *BPF) ReadEvent(ctx context.Context) (Event, error) {
	b.readMu.Lock()
	defer b.readMu.Unlock()

	if b.ring == nil {
		rd, err := ringbuf.NewReader(b.maps.Events)
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
	if err := b.maps.EventsLost.Lookup(uint32(0), &lost); err != nil || lost <= b.lostSeen {
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
		CgroupID:       re.CgroupId,
		PID:            re.Pid,
		TID:            re.Tid,
		Op:             opNames[re.Op],
		Count:          re.Count,
		Boottime:       time.Duration(re.BoottimeNs),
		ParentCgroupID: re.ParentCgroupId,
	}
	if ev.Kind == EventDenied {
		ev.Suppressed, ev.Count = re.Count, 0
	}
	ev.Tag.Chain = chainOf(re.Id, re.Depth, &re.Chain)
	ev.Tag.Flags = contidFlags(re.Flags)
	if i := bytes.IndexByte(re.Name[:], 0); i >= 0 {
		ev.Name = string(re.Name[:i])
	} else {
		ev.Name = string(re.Name[:])
	}
	return ev, nil
}
