package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// rebuiltMaps are the maps whose whole content is configuration or
// bookkeeping that Load, or contidd right after it, writes again: the
// guards' lists, the configuration, the autotag parents and patterns, and
// the iterator's scratch entry. When a new build changes one's shape (more
// protected inodes, a longer configuration value), its pin from the build
// before is replaced instead of refused, so a package upgrade over live
// pins starts. Every other map holds tags, IDs or events that only the
// kernel knows, and a change to one of those is still ErrPinMismatch.
var rebuiltMaps = []string{
	contidMapAutotagParents, contidMapAutotagScopes, contidMapContidConfig, contidMapIterTarget,
	contidMapProtectedIds, contidMapProtectedInodes, contidMapProtectedTasks,
}

// replaceOutgrown is cleared by tests only, to show what Load does
// without the replacement.
var replaceOutgrown = true

// replaceOutgrownPins replaces each pin in pinDir of a rebuilt map whose
// shape this build's spec no longer accepts. The entries are copied when
// keys and values kept their sizes (a map that grew), so the autotag
// parents and the guards' lists hold without a gap; a value of another
// size is left for Load to write. The new map is pinned under a
// temporary name and renamed over the old pin, so the pin is never
// missing. It returns the names it replaced: the programs still running
// use the old maps, so every link must then be replaced too, even one
// that runs the same code (a program's tag does not cover which maps it
// uses).
func replaceOutgrownPins(spec *ebpf.CollectionSpec, pinDir string) ([]string, error) {
	var replaced []string
	if !replaceOutgrown {
		return nil, nil
	}
	for _, name := range rebuiltMaps {
		ms := spec.Maps[name]
		if ms == nil {
			continue
		}
		path := filepath.Join(pinDir, name)
		old, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return replaced, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		did, err := replaceIfOutgrown(ms, old, path)
		old.Close()
		if err != nil {
			return replaced, err
		}
		if did {
			replaced = append(replaced, name)
		}
	}
	return replaced, nil
}

// replaceIfOutgrown replaces the pin at path with a map of this build's
// shape when ms no longer accepts old; it reports whether it did.
func replaceIfOutgrown(ms *ebpf.MapSpec, old *ebpf.Map, path string) (bool, error) {
	if ms.Compatible(old) == nil {
		return false, nil
	}
	fresh := ms.Copy()
	fresh.Pinning = ebpf.PinNone
	nm, err := ebpf.NewMap(fresh)
	if err != nil {
		return false, fmt.Errorf("create %s in this build's shape: %w", ms.Name, err)
	}
	defer nm.Close()
	if old.KeySize() == nm.KeySize() && old.ValueSize() == nm.ValueSize() && old.Type() == nm.Type() {
		if err := copyEntries(old, nm); err != nil {
			return false, fmt.Errorf("copy %s into this build's shape: %w", ms.Name, err)
		}
	}
	tmp := path + "_new"
	_ = os.Remove(tmp)
	if err := nm.Pin(tmp); err != nil {
		return false, fmt.Errorf("pin %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("replace the pin %s: %w", path, err)
	}
	return true, nil
}

// copyEntries copies what fits: a hash map that shrank keeps the entries
// it had room for.
func copyEntries(from, to *ebpf.Map) error {
	k := make([]byte, from.KeySize())
	v := make([]byte, from.ValueSize())
	it := from.Iterate()
	for it.Next(&k, &v) {
		err := to.Update(k, v, ebpf.UpdateAny)
		if errors.Is(err, unix.E2BIG) {
			break
		}
		if err != nil {
			return err
		}
	}
	return it.Err()
}
