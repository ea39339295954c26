package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

func TestLoadTracking(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	mode, reason := b.Enforcement()
	if mode != contid.ModeTracking {
		t.Fatalf("mode = %s (%s), want tracking", mode, reason)
	}
	t.Logf("mode %s: %s", mode, reason)
}

// ProtectFile lists an open file's inode for the file_open guard in
// enforcing mode (the VM tier runs this test so, and shows the guard
// refusing a tagged open of the audit spool through /proc/1/fd), and does
// nothing in tracking mode, where no guard would read the entry. The
// entry outlives a restart (a Load, which sweeps the directories), so the
// spool in systemd's store is never unguarded while the next contidd
// starts, and the next file listed replaces it.
func TestProtectFile(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	b := loadTest(t, pinDir)
	memfd := func(name string) (*os.File, protectedInode) {
		fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), name)
		t.Cleanup(func() { f.Close() })
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		return f, statKey(&st)
	}
	listed := func(b *BPF, k protectedInode) bool {
		var v uint8
		return b.maps.ProtectedInodes.Lookup(k, &v) == nil
	}
	enforcing := testMode() == ModeEnforcing
	first, firstKey := memfd("contid-test-first")
	if err := b.ProtectFile(first); err != nil {
		t.Fatal(err)
	}
	if got := listed(b, firstKey); got != enforcing {
		t.Fatalf("%s mode: the file is listed = %v, want %v", testMode(), got, enforcing)
	}
	again := loadTest(t, pinDir)
	if got := listed(again, firstKey); got != enforcing {
		t.Fatalf("%s mode, after a restart: the file is listed = %v, want %v", testMode(), got, enforcing)
	}
	second, secondKey := memfd("contid-test-second")
	if err := again.ProtectFile(second); err != nil {
		t.Fatal(err)
	}
	if listed(again, firstKey) || listed(again, secondKey) != enforcing {
		t.Fatalf("%s mode, a second file: first listed %v, second %v; want false, %v", testMode(), listed(again, firstKey), listed(again, secondKey), enforcing)
	}
}

// The exceptions of [Enforce] reach the guards through contid_config,
// which is pinned: each Load writes them afresh, so a restart without an
// exception takes it back, and SetMaxDepth leaves them as they are.
func TestLoadWritesExceptions(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	cases := []struct {
		name string
		opts Options
		want uint32
	}{
		{"bpf allowed", Options{AllowBPF: true}, uint32(contidAllowBitALLOW_BPF)},
		{"both allowed", Options{AllowBPF: true, AllowModules: true}, uint32(contidAllowBitALLOW_BPF | contidAllowBitALLOW_MODULES)},
		{"modules allowed", Options{AllowModules: true}, uint32(contidAllowBitALLOW_MODULES)},
		{"denial budget", Options{DenialBurst: 64, DenialRate: 16}, 0},
		{"none after a restart without them", Options{}, 0},
	}
	// The mount guards' host namespace, as the kernel names PID 1's. A
	// PID 1 this root may not inspect (a sandbox's) leaves it 0, which
	// only tracking mode accepts.
	var hostNS uint32
	link, err := os.Readlink("/proc/1/ns/mnt")
	switch {
	case err == nil:
		if _, err := fmt.Sscanf(link, "mnt:[%d]", &hostNS); err != nil || hostNS == 0 {
			t.Fatalf("parse %q: %v", link, err)
		}
	case os.IsPermission(err) && testMode() != ModeEnforcing:
	default:
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.PinDir, opts.Mode, opts.MaxDepth = pinDir, testMode(), 5
			b, err := Load(opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer b.Close()
			var got configValue
			if err := b.maps.ContidConfig.Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			want := configValue{MaxDepth: 5, Allow: tc.want, HostMntNs: hostNS, DenialBurst: tc.opts.DenialBurst, DenialRate: tc.opts.DenialRate}
			if got != want {
				t.Fatalf("contid_config after Load = %+v, want %+v", got, want)
			}
			if err := b.SetMaxDepth(2); err != nil {
				t.Fatal(err)
			}
			if err := b.maps.ContidConfig.Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			want.MaxDepth = 2
			if got != want {
				t.Fatalf("contid_config after SetMaxDepth(2) = %+v, want %+v", got, want)
			}
		})
	}
}

// The mount guards read the ancestors of the pin and state directories
// from protected_inodes (value protectedAncestor), which the other guards
// ignore. A load lists the pin directory's, keeps a directory that is
// both at the stronger value, and sweeps what it no longer lists: an
// earlier load's directory that is now only an ancestor becomes one
// (it must not keep guarding its files), and the state directory's
// ancestors go until ProtectDirectory lists them again. The spool file
// stays. The map is written here whatever the mode; enforcing mode is
// set on the loaded BPF so that ProtectDirectory writes too.
func TestProtectAncestors(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	b := loadTest(t, pinDir)
	b.mode = contid.ModeEnforcing
	im := b.maps.ProtectedInodes
	key := func(p string) protectedInode {
		k, err := inodeKey(p)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	value := func(k protectedInode) uint8 {
		var v uint8
		if err := im.Lookup(k, &v); err != nil {
			return 0
		}
		return v
	}
	cgRoot, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	staleDir := t.TempDir()
	spool := protectedInode{Ino: 1, Dev: 1}
	for k, v := range map[protectedInode]uint8{
		key("/sys/fs"): protectedDirectory,
		key(staleDir):  protectedAncestor,
		spool:          protectedFile,
	} {
		if err := im.Update(k, v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.protectPinDir(); err != nil {
		t.Fatal(err)
	}
	if err := b.ProtectDirectory(stateDir); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		key  protectedInode
		want uint8
	}{
		{"pin directory", key(pinDir), protectedDirectory},
		{"bpffs", key("/sys/fs/bpf"), protectedAncestor},
		{"earlier directory, now an ancestor", key("/sys/fs"), protectedAncestor},
		{"root", key("/"), protectedRoot},
		{"stale ancestor", key(staleDir), 0},
		{"spool", spool, protectedFile},
		{"state directory", key(stateDir), protectedDirectory},
		{"state directory's parent", key(filepath.Dir(stateDir)), protectedAncestor},
		{"state directory's filesystem", protectedInode{Dev: key(stateDir).Dev}, protectedAncestor},
		{"cgroup2 hierarchy's parent", key(filepath.Dir(cgRoot)), protectedAncestor},
	}
	for _, tc := range cases {
		if got := value(tc.key); got != tc.want {
			t.Errorf("%s: value %d, want %d", tc.name, got, tc.want)
		}
	}
	if err := b.protectPinDir(); err != nil {
		t.Fatal(err)
	}
	if got := value(key(filepath.Dir(stateDir))); got != 0 {
		t.Errorf("state directory's parent after a load: value %d, want 0 (swept)", got)
	}
	if got := value(protectedInode{Dev: key(stateDir).Dev}); got != 0 {
		t.Errorf("state directory's filesystem after a load: value %d, want 0 (swept)", got)
	}
	if got := value(key("/sys")); got != protectedAncestor {
		t.Errorf("/sys after a load: value %d, want %d", got, protectedAncestor)
	}
	if err := im.Delete(spool); err != nil {
		t.Fatal(err)
	}
}
