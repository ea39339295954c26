// Package procfd reads which sockets a process holds, from the
// descriptor links under /proc/PID/fd.
package procfd

import (
	"os"
	"strconv"
	"strings"
)

// HoldsSocket reports whether process pid has a socket among its
// descriptors whose inode match accepts. The error is ReadDir's when the
// descriptors cannot be listed (fs.ErrNotExist once the process is gone);
// a descriptor closed while the list is read is skipped.
func HoldsSocket(pid int, match func(inode uint64) bool) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		link, err := os.Readlink(dir + e.Name())
		if err != nil {
			continue
		}
		num, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		inode, err := strconv.ParseUint(strings.TrimSuffix(num, "]"), 10, 64)
		if err == nil && match(inode) {
			return true, nil
		}
	}
	return false, nil
}
