package kernel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/contid/contid"
)

func TestAttribute(t *testing.T) {
	const ms = int64(time.Millisecond)
	slack := 20 * time.Millisecond
	rec := func(id uint64, start, exit int64) pidRecord {
		return pidRecord{Id: id, StartNs: uint64(start * ms), ExitNs: uint64(exit * ms)}
	}
	container7 := &pidTag{Cur: rec(7, 100, 0)}
	container9 := &pidTag{Cur: rec(9, 100, 0)}
	var none contid.Candidates
	cases := []struct {
		name   string
		pt     pidTag
		parent *pidTag // the pid_tags of the event's parent, if any
		atMS   int64
		wantID contid.ID
		want   contid.Attribution
		// cands are the candidates an ambiguous answer names.
		cands contid.Candidates
	}{
		{"no records", pidTag{}, nil, 1000, 0, contid.Unattributed, none},
		{"alive, after start", pidTag{Cur: rec(7, 1000, 0)}, nil, 5000, 7, contid.LiveProcess, none},
		{"alive, within slack before start", pidTag{Cur: rec(7, 1000, 0)}, nil, 985, 7, contid.LiveProcess, none},
		{"alive, stamped early by a lagging coarse clock", pidTag{Cur: rec(7, 2000, 0)}, container7, 1900, 7, contid.LiveProcess, none},
		{"alive, long before start", pidTag{Cur: rec(7, 2000, 0)}, nil, 900, 0, contid.Unattributed, none},
		{"lagging stamp after the previous life ended", pidTag{Cur: rec(9, 3000, 0), Prev: rec(7, 1000, 2000)}, container9, 2900, 9, contid.LiveProcess, none},
		{"lagging stamp, previous life still alive then", pidTag{Cur: rec(9, 3000, 0), Prev: rec(7, 1000, 2990)}, nil, 2900, 7, contid.ExitedProcess, none},
		{"exited, during life", pidTag{Cur: rec(7, 1000, 2000)}, nil, 1500, 7, contid.ExitedProcess, none},
		{"exited, within slack after exit", pidTag{Cur: rec(7, 1000, 2000)}, nil, 2015, 7, contid.ExitedProcess, none},
		{"exited, after exit", pidTag{Cur: rec(7, 1000, 2000)}, nil, 2100, 0, contid.Unattributed, none},
		{"reused by untagged, old life", pidTag{Cur: rec(0, 3000, 0), Prev: rec(7, 1000, 2000)}, nil, 1500, 7, contid.ExitedProcess, none},
		{"reused by untagged, new life", pidTag{Cur: rec(0, 3000, 0), Prev: rec(7, 1000, 2000)}, nil, 3500, 0, contid.Unattributed, none},
		{"reused by another container, new life", pidTag{Cur: rec(9, 3000, 0), Prev: rec(7, 1000, 2000)}, nil, 3500, 9, contid.LiveProcess, none},
		{"reused within slack, different IDs", pidTag{Cur: rec(9, 2010, 0), Prev: rec(7, 1000, 2000)}, nil, 2005, 0, contid.AmbiguousPID, contid.Candidates{7, 9}},
		{"reused within slack, untagged successor", pidTag{Cur: rec(0, 2010, 0), Prev: rec(7, 1000, 2000)}, nil, 2005, 0, contid.AmbiguousPID, contid.Candidates{7}},
		{"reused within slack, untagged predecessor", pidTag{Cur: rec(9, 2010, 0), Prev: rec(0, 1000, 2000)}, nil, 2005, 0, contid.AmbiguousPID, contid.Candidates{9}},
		{"reused within slack, successor exited too", pidTag{Cur: rec(4, 2010, 2012), Prev: rec(7, 1000, 2000)}, nil, 2020, 0, contid.AmbiguousPID, contid.Candidates{7, 4}},
		{"reused, stamp in the old life's slack before the new start", pidTag{Cur: rec(9, 2030, 0), Prev: rec(7, 1000, 2000)}, nil, 2015, 0, contid.AmbiguousPID, contid.Candidates{7, 9}},
		{"reused within slack, same ID", pidTag{Cur: rec(7, 2010, 0), Prev: rec(7, 1000, 2000)}, nil, 2005, 7, contid.LiveProcess, none},
		// An early stamp on a PID with no recorded earlier life may be an
		// untagged process's that held the PID unrecorded: only a parent
		// with the same ID at that time vouches for the current life.
		{"early stamp, no parent on record", pidTag{Cur: rec(7, 2000, 0)}, nil, 1900, 0, contid.Unattributed, none},
		{"early stamp, untagged parent", pidTag{Cur: rec(7, 2000, 0)}, &pidTag{Cur: rec(0, 100, 0)}, 1900, 0, contid.Unattributed, none},
		{"early stamp, parent in the enclosing container", pidTag{Cur: rec(7, 2000, 0)}, container9, 1900, 7, contid.LiveProcess, none},
		{"early stamp, parent exited before it", pidTag{Cur: rec(7, 2000, 0)}, &pidTag{Cur: rec(7, 100, 1500)}, 1900, 0, contid.Unattributed, none},
		{"early stamp, parent exited after it", pidTag{Cur: rec(7, 2000, 0)}, &pidTag{Cur: rec(7, 100, 2500)}, 1900, 7, contid.LiveProcess, none},
		{"before both lives on record: the PID was taken twice since", pidTag{Cur: rec(9, 5000, 0), Prev: rec(7, 3000, 4000)}, nil, 1000, 0, contid.AmbiguousPID, none},
		{"just before both lives on record", pidTag{Cur: rec(9, 5000, 0), Prev: rec(7, 3000, 4000)}, nil, 2979, 0, contid.AmbiguousPID, none},
		{"between two lives", pidTag{Cur: rec(9, 5000, 0), Prev: rec(7, 1000, 2000)}, nil, 3000, 0, contid.Unattributed, none},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, how, cands := resolve(tc.pt, tc.parent, tc.atMS*ms, slack)
			if id != tc.wantID || how != tc.want || cands != tc.cands {
				t.Errorf("attribute = %d, %d, candidates %v; want %d, %d, candidates %v", id, how, cands, tc.wantID, tc.want, tc.cands)
			}
		})
	}
}

func BenchmarkAttributeMatch(b *testing.B) {
	pt := pidTag{Cur: pidRecord{Id: 9, StartNs: 3e9}, Prev: pidRecord{Id: 7, StartNs: 1e9, ExitNs: 2e9}}
	b.ReportAllocs()
	for b.Loop() {
		resolve(pt, nil, 1.5e9, attributionSlack)
	}
}

func TestCleanCgroupPath(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{"/machine.slice/x.scope", "/machine.slice/x.scope", false},
		{"/", "/", false},
		{"/machine.slice//x.scope/", "/machine.slice/x.scope", false},
		{"", "", true},
		{"machine.slice", "", true},
		{"/machine.slice/../etc", "", true},
		{"/..", "", true},
		{"/./x", "", true},
		{"/x\x00y", "", true},
		{"/x\ny", "", true},
	}
	for _, tc := range cases {
		got, err := CleanCgroupPath(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrBadCgroupPath) {
				t.Errorf("CleanCgroupPath(%q) = %q, %v; want ErrBadCgroupPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanCgroupPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCgroup2RootFromMountinfo(t *testing.T) {
	cases := []struct {
		name, mountinfo, want string
		err                   error
	}{
		{"hybrid", `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`, "/sys/fs/cgroup/unified", nil},
		{"unified with optional fields", `36 25 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
`, "/sys/fs/cgroup", nil},
		{"escaped space, sub-cgroup bind skipped", `50 25 0:30 /sub /mnt/sub rw - cgroup2 cgroup2 rw
51 25 0:30 / /mnt/my\040cgroup rw - cgroup2 cgroup2 rw
`, "/mnt/my cgroup", nil},
		{"v1 only", `39 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
`, "", ErrNoCgroup2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup2RootFrom(bufio.NewScanner(strings.NewReader(tc.mountinfo)))
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCgroupFromProcFile(t *testing.T) {
	cases := []struct{ in, want string }{
		{"12:pids:/user.slice\n0::/machine.slice/x.scope\n", "/machine.slice/x.scope"},
		{"0::/gone (deleted)\n", "/gone"},
		{"0::/\n", "/"},
	}
	for _, tc := range cases {
		got, err := cgroupFromProcFile(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("cgroupFromProcFile(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := cgroupFromProcFile("1:name=systemd:/\n"); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("v1-only file: err %v, want ErrNoCgroup2", err)
	}
}

func TestLSMListReason(t *testing.T) {
	cases := []struct {
		list    string
		enabled bool
	}{
		{"lockdown,capability,landlock,yama,apparmor,bpf", true},
		{"bpf", true},
		{"capability,landlock,yama", false},
		{"capability,bpfilter", false},
		{"", false},
	}
	for _, tc := range cases {
		reason := lsmListReason(tc.list)
		if (reason == "") != tc.enabled {
			t.Errorf("lsmListReason(%q) = %q, want enabled=%v", tc.list, reason, tc.enabled)
		}
		if !tc.enabled && !strings.Contains(reason, "lsm="+tc.list+",bpf") {
			t.Errorf("reason %q does not say how to enable it", reason)
		}
	}
}

func TestTagEncoding(t *testing.T) {
	cases := []contid.Tag{
		{Chain: contid.Chain{4}},
		{Chain: contid.Chain{4, 2, 1}, Flags: contid.FlagAllowNesting | contid.FlagJoinIgnore},
		{Chain: contid.Chain{8, 7, 6, 5, 4, 3, 2, 1}, Flags: contid.FlagAutotag},
	}
	for _, tag := range cases {
		ct := toCgroupTag(tag)
		if ct.Id != uint64(tag.ID()) || ct.Parent != uint64(tag.Chain.Parent()) || int(ct.Depth) != len(tag.Chain) {
			t.Errorf("%s: encoded %+v", tag.Chain, ct)
		}
		back := ct.tag()
		if back.Chain.String() != tag.Chain.String() || back.Flags != tag.Flags {
			t.Errorf("round trip %s/%v -> %s/%v", tag.Chain, tag.Flags, back.Chain, back.Flags)
		}
	}
	for _, bad := range []contid.Tag{{}, {Chain: contid.Chain{1, 2, 3, 4, 5, 6, 7, 8, 9}}, {Chain: contid.Chain{5, 0}}, {Chain: contid.Chain{contid.Invalid}}} {
		if err := validateTag(bad); !errors.Is(err, ErrBadTag) {
			t.Errorf("validateTag(%v) = %v, want ErrBadTag", bad.Chain, err)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	re := rawEvent{Kind: contidEventKindEV_AUTOTAG, Pid: 10, Tid: 11, Id: 5, CgroupId: 77, ParentCgroupId: 66,
		BoottimeNs: 1234, Depth: 2, Flags: uint32(contid.FlagAutotag), Op: contidDeniedOpDENIED_BPF_MAP}
	re.Chain[0], re.Chain[1] = 5, 3
	copy(re.Name[:], "machine-1")
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, re); err != nil {
		t.Fatal(err)
	}
	ev, err := decodeEvent(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != EventAutotag || ev.PID != 10 || ev.TID != 11 || ev.CgroupID != 77 || ev.ParentCgroupID != 66 ||
		ev.Tag.Chain.String() != "5,^3" || ev.Tag.Flags != contid.FlagAutotag || ev.Name != "machine-1" ||
		ev.Op != "bpf_map" || ev.Boottime != 1234 {
		t.Errorf("decoded %+v", ev)
	}
	if _, err := decodeEvent(buf.Bytes()[:10]); err == nil {
		t.Error("short record decoded without error")
	}

	// A denial's count field is its container's suppressed total.
	re = rawEvent{Kind: contidEventKindEV_DENIED, Pid: 10, Id: 5, Op: contidDeniedOpDENIED_KILL, Count: 913}
	buf.Reset()
	if err := binary.Write(&buf, binary.NativeEndian, re); err != nil {
		t.Fatal(err)
	}
	if ev, err = decodeEvent(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != EventDenied || ev.Suppressed != 913 || ev.Count != 0 || ev.Op != "kill" || ev.Tag.ID() != 5 {
		t.Errorf("decoded denial %+v, want Suppressed 913, Count 0", ev)
	}
}

// The records Go decodes with encoding/binary (the ring buffer's and the
// iterator's) are generated with structs.HostLayout; binary must still
// see exactly the bytes the C structs have.
func TestDecodedRecordsHaveBTFSizes(t *testing.T) {
	spec, _ := loadTestSpec(t)
	for name, goVal := range map[string]any{"event": rawEvent{}, "iter_record": iterRecord{}} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := binary.Size(goVal); got != int(st.Size) {
			t.Errorf("struct %s: encoding/binary sees %d bytes, BTF says %d", name, got, st.Size)
		}
	}
}

// Every operation a guard can report has a name: one without would reach
// D-Bus and the journal as an empty operation. The names are the C
// enumerators without their prefix, read from the object's BTF.
func TestOpNamesCoverEnum(t *testing.T) {
	spec, _ := loadTestSpec(t)
	var ops *btf.Enum
	if err := spec.Types.TypeByName("denied_op", &ops); err != nil {
		t.Fatal(err)
	}
	for _, v := range ops.Values {
		want := strings.ToLower(strings.TrimPrefix(v.Name, "DENIED_"))
		if got := opNames[contidDeniedOp(v.Value)]; got != want {
			t.Errorf("%s = %d: opNames has %q, want %q", v.Name, v.Value, got, want)
		}
	}
	if len(ops.Values) != len(opNames) {
		t.Errorf("enum denied_op has %d values, opNames names %d", len(ops.Values), len(opNames))
	}
}

// Every LSM program in the object is attached in enforcing mode, and
// every attachment names a program of the object: a guard that is
// compiled but not listed would never run.
func TestEveryGuardIsAttached(t *testing.T) {
	spec, progs := loadTestSpec(t)
	listed := map[string]bool{}
	for _, ps := range enforcingAttachments(progs) {
		listed[ps.Name] = true
		if ps.Type != ebpf.LSM {
			t.Errorf("%s is attached in enforcing mode but is a %s program", ps.Name, ps.Type)
		}
	}
	for _, ps := range trackingAttachments(progs) {
		if ps.Type == ebpf.LSM {
			t.Errorf("%s is an LSM program attached in tracking mode", ps.Name)
		}
	}
	for name, ps := range spec.Programs {
		if ps.Type == ebpf.LSM && !listed[name] {
			t.Errorf("LSM program %s (%s) is never attached", name, ps.AttachTo)
		}
	}
}
