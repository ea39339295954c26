package dbus

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/internal/p2p"
	"github.com/contid/contid/kernel"
)

// allowance is whose allowance a new peer-to-peer connection draws on
// (p2p.Dispatcher.Allowance). A connection from a process in a container
// draws on its outermost container's, whatever its UID and however deep it
// is nested: root in a container can switch among as many UIDs as it
// likes, and would otherwise take one allowance per UID. UID 0 counts as
// root only when its connecting process is alive and in no container. The
// container is read at accept, from a pidfd of the connecting PID. A
// connector that is gone or unreadable by then draws on an allowance of
// its own (contid.Invalid), so a container cannot pass its connections off
// as root's or a user's by letting the connector exit. The PID is not
// pinned by the time the tag is read; a reused PID can only make contidd
// charge another allowance, never grant anything: authorization reads the
// process pinned for the connection.
func (m *Manager) allowance(uid, pid uint32) p2p.Group {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return p2p.ContainerGroup(contid.Invalid)
	}
	defer unix.Close(fd)
	id, err := m.cfg.Tracker.ProcessID(fd)
	switch {
	case errors.Is(err, kernel.ErrNotTagged), err == nil && id == contid.Unset:
		if uid != 0 {
			return m.groups.group(uid)
		}
		return p2p.Group{}
	case err != nil:
		return p2p.ContainerGroup(contid.Invalid)
	}
	// The outermost container's: a nested orchestrator could otherwise
	// tag a child cgroup per 32 connections and take every connection
	// users may hold. A container contidd has no record of yet (an
	// autotag it has not adopted) shares one allowance with every other
	// such, so those cannot multiply allowances either.
	c, err := m.cfg.Registry.Get(id)
	if err != nil || len(c.Chain) == 0 {
		return p2p.ContainerGroup(contid.Invalid)
	}
	return p2p.ContainerGroup(c.Chain[len(c.Chain)-1])
}

// subUIDs groups the UIDs of /etc/subuid with the user they belong to. A
// rootless user's containers run as that user's subordinate UIDs, so
// without this a user with a range of 65,536 UIDs would get 65,536
// allowances. UIDs in no range are their own group. Only the file is read
// (as shadow-utils' newuidmap does by default); ranges handed out by an
// NSS subid module are not seen.
type subUIDs struct {
	path string

	mu      sync.Mutex
	checked time.Time // the file is looked at once a second at most
	mtime   time.Time
	size    int64
	ranges  []subUIDRange
}

type subUIDRange struct {
	first, count uint64
	owner        p2p.Group
}

func newSubUIDs(path string) *subUIDs { return &subUIDs{path: path} }

// group returns the allowance uid draws on. The file is read again when it
// changes; while it cannot be read, every UID is its own group.
func (s *subUIDs) group(uid uint32) p2p.Group {
	if uid == 0 {
		return p2p.Group{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	for _, r := range s.ranges {
		if uint64(uid) >= r.first && uint64(uid)-r.first < r.count {
			return r.owner
		}
	}
	// UIDs above 65535 that no range names belong to user namespaces set
	// up without /etc/subuid, such as systemd-nspawn --private-users=pick,
	// which hands each container a block of 65,536 aligned to 65,536. The
	// block is one user, or one container would have 65,536 allowances.
	if uid > 0xffff {
		return p2p.Group{UID: uid &^ 0xffff, Block: true}
	}
	return p2p.Group{UID: uid}
}

func (s *subUIDs) refresh() {
	now := time.Now()
	if now.Sub(s.checked) < time.Second {
		return
	}
	s.checked = now
	fi, err := os.Stat(s.path)
	if err != nil {
		s.ranges, s.mtime, s.size = nil, time.Time{}, 0
		return
	}
	if fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return
	}
	s.ranges, s.mtime, s.size = parseSubUIDs(b, lookupUID), fi.ModTime(), fi.Size()
}

// parseSubUIDs reads "owner:first:count" lines; owner is a user name or a
// UID. An owner that cannot be resolved still groups its range, under the
// range's first UID.
func parseSubUIDs(b []byte, lookup func(name string) (uint32, bool)) []subUIDRange {
	var out []subUIDRange
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		first, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		var owner uint32
		if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
			owner = uint32(n)
		} else if u, ok := lookup(f[0]); ok {
			owner = u
		} else {
			owner = uint32(first)
		}
		out = append(out, subUIDRange{first: first, count: count, owner: p2p.Group{UID: owner, RootSub: owner == 0}})
	}
	return out
}

func lookupUID(name string) (uint32, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err == nil
}
