package journal

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel/audit"
)

// appendSummary writes the one-line MESSAGE, read the way `ausearch -i`
// reads an event: what was done to what, by whom, and how it ended, e.g.
//
//	container 42 (web): execve /usr/bin/id by pid 1234 uid root res=success
//	container 42 (web): execve /no/such by pid 1234 uid root res=failed exit=ENOENT
//
// The raw values stay in the AUDIT_FIELD_* fields; the MESSAGE is for
// people.
func appendSummary(b []byte, ev *audit.Event, chain contid.Chain, name string, users *userNames) []byte {
	if len(chain) > 0 {
		b = append(b, "container "...)
		b = strconv.AppendUint(b, uint64(chain[0]), 10)
		if name != "" {
			b = append(b, " ("...)
			b = append(b, name...)
			b = append(b, ')')
		}
		b = append(b, ": "...)
	}
	if v, ok := auditingSwitch(ev); ok {
		if v == "0" {
			b = append(b, "kernel auditing switched off: nothing is audited, and nothing counted lost, until it is switched on again"...)
		} else {
			b = append(b, "kernel auditing switched on"...)
		}
		if auid, ok := ev.Get("auid"); ok {
			b = append(b, " (auid "...)
			b = append(b, auid...)
			b = append(b, ')')
		}
		return b
	}
	what := ev.Syscall()
	if what == "" && len(ev.Records) > 0 {
		what = ev.Records[0].Type.String()
	}
	b = append(b, what...)
	succeeded := eventSucceeded(ev)
	b = appendTarget(b, ev, what, succeeded)
	if ev.HasPID {
		b = append(b, " by pid "...)
		b = strconv.AppendUint(b, uint64(ev.PID), 10)
	}
	if uid, ok := ev.Get("uid"); ok {
		b = append(b, " uid "...)
		b = users.appendName(b, uid)
		// A setuid program acts with another user's rights.
		if euid, ok := ev.Get("euid"); ok && euid != uid {
			b = append(b, " euid "...)
			b = users.appendName(b, euid)
		}
	}
	if succeeded {
		return append(b, " res=success"...)
	}
	b = append(b, " res=failed"...)
	if errno, ok := failedErrno(ev); ok {
		b = append(b, " exit="...)
		b = append(b, errno...)
	}
	return b
}

// appendTarget writes what the call acted on: the file an exec ran (or,
// when it failed, the file it tried: exe= is then still the caller's own
// program), the file a call opened, created or removed, the process a
// signal went to, the address a socket call named.
func appendTarget(b []byte, ev *audit.Event, what string, succeeded bool) []byte {
	if (what == "execve" || what == "execveat") && succeeded {
		if exe, ok := ev.Get("exe"); ok {
			return appendEscaped(append(b, ' '), exe)
		}
	}
	if p, ok := targetPath(ev); ok {
		return appendEscaped(append(b, ' '), p)
	}
	if r, ok := ev.Record(auparse.AUDIT_OBJ_PID); ok {
		if pid, ok := r.Get("opid"); ok {
			b = append(b, " pid "...)
			b = appendEscaped(b, pid)
			if comm, ok := r.Get("ocomm"); ok && comm != "" {
				b = append(b, " ("...)
				b = appendEscaped(b, comm)
				b = append(b, ')')
			}
			return b
		}
	}
	if r, ok := ev.Record(auparse.AUDIT_SOCKADDR); ok {
		if s, ok := r.Get("saddr"); ok {
			if addr, ok := socketAddress(s); ok {
				return appendEscaped(append(b, ' '), addr)
			}
		}
	}
	if op, ok := ev.Get("op"); ok {
		b = append(b, " op="...)
		b = appendEscaped(b, op)
	}
	return b
}

// appendEscaped writes a value a process chose (a file name, a command
// name) with its control characters escaped as \xNN, and the backslash as
// \\: a name with a newline in it must not start what reads as another
// event's line, nor a terminal escape act on the screen of whoever reads
// the journal.
func appendEscaped(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// targetPath is the path a call acted on: the first PATH record that is
// not the parent directory of another (unlink and rename log the
// directory first), made absolute with the event's CWD when the caller
// gave a relative one.
func targetPath(ev *audit.Event) (string, bool) {
	var first, chosen *audit.Record
	for i := range ev.Records {
		r := &ev.Records[i]
		if r.Type != auparse.AUDIT_PATH {
			continue
		}
		if first == nil {
			first = r
		}
		if nt, _ := r.Get("nametype"); nt != "PARENT" {
			chosen = r
			break
		}
	}
	if chosen == nil {
		chosen = first
	}
	if chosen == nil {
		return "", false
	}
	name, ok := chosen.Get("name")
	if !ok || name == "(null)" || name == "" {
		return "", false
	}
	if !filepath.IsAbs(name) {
		if cwd, ok := ev.Get("cwd"); ok && filepath.IsAbs(cwd) {
			name = filepath.Join(cwd, name)
		}
	}
	return name, true
}

// failedErrno names the error a failed system call returned (exit=-2:
// ENOENT), as ausearch -i does.
func failedErrno(ev *audit.Event) (string, bool) {
	r, ok := ev.Record(auparse.AUDIT_SYSCALL)
	if !ok {
		return "", false
	}
	v, ok := r.Get("exit")
	if !ok {
		return "", false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n >= 0 || n < -4095 {
		return "", false
	}
	if name := unix.ErrnoName(syscall.Errno(-n)); name != "" {
		return name, true
	}
	return v, true
}

// socketAddress reads a SOCKADDR record's saddr (the raw struct sockaddr,
// hex) as "inet 10.0.0.1:80", "inet6 [::1]:443" or "unix /run/x.sock"
// ("unix @name" for the abstract namespace).
func socketAddress(saddr string) (string, bool) {
	raw, err := hex.DecodeString(saddr)
	if err != nil || len(raw) < 2 {
		return "", false
	}
	// sa_family is in host order: little-endian on every architecture
	// the package is built for.
	family := uint16(raw[0]) | uint16(raw[1])<<8
	port := func() uint16 { return uint16(raw[2])<<8 | uint16(raw[3]) }
	switch {
	case family == unix.AF_INET && len(raw) >= 8:
		a := netip.AddrFrom4([4]byte(raw[4:8]))
		return "inet " + netip.AddrPortFrom(a, port()).String(), true
	case family == unix.AF_INET6 && len(raw) >= 24:
		a := netip.AddrFrom16([16]byte(raw[8:24]))
		return "inet6 " + netip.AddrPortFrom(a, port()).String(), true
	case family == unix.AF_UNIX:
		path := raw[2:]
		if len(path) > 0 && path[0] == 0 {
			return "unix @" + strings.TrimRight(string(path[1:]), "\x00"), true
		}
		if i := strings.IndexByte(string(path), 0); i >= 0 {
			path = path[:i]
		}
		if len(path) == 0 {
			return "unix (unnamed)", true
		}
		return "unix " + string(path), true
	}
	return "", false
}

// userNames names UIDs from the host's passwd file, as ausearch -i does.
// It is written here rather than taken from os/user because os/user reads
// the whole file again on every lookup, and the forwarder names the users
// of thousands of events a second; this reads it once and again only when
// it changed (looked at once every passwdCheck). UIDs it does not list (a
// container's users mapped to subordinate UIDs) stay numbers.
type userNames struct {
	path    string
	names   map[uint32]string
	checked time.Time
	mtime   time.Time
	size    int64
	now     func() time.Time
}

const passwdCheck = 5 * time.Second

func newUserNames(path string) *userNames {
	return &userNames{path: path, now: time.Now}
}

// appendName writes uid's user name, or the number itself when it has
// none ("4294967295", unset, stays as it is).
func (u *userNames) appendName(b []byte, uid string) []byte {
	n, err := strconv.ParseUint(uid, 10, 32)
	if err != nil || u == nil {
		return append(b, uid...)
	}
	if name, ok := u.lookup(uint32(n)); ok {
		return append(b, name...)
	}
	return append(b, uid...)
}

func (u *userNames) lookup(uid uint32) (string, bool) {
	if now := u.now(); now.Sub(u.checked) >= passwdCheck {
		u.checked = now
		u.reload()
	}
	name, ok := u.names[uid]
	return name, ok
}

// reload reads the file when its size or time changed; a file that
// cannot be read names nobody.
func (u *userNames) reload() {
	fi, err := os.Stat(u.path)
	if err != nil {
		u.names, u.mtime, u.size = nil, time.Time{}, 0
		return
	}
	if u.names != nil && fi.ModTime().Equal(u.mtime) && fi.Size() == u.size {
		return
	}
	f, err := os.Open(u.path)
	if err != nil {
		u.names = nil
		return
	}
	defer f.Close()
	names := map[uint32]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:UID:GID:GECOS:home:shell
		parts := strings.SplitN(sc.Text(), ":", 4)
		if len(parts) < 4 || parts[0] == "" || strings.HasPrefix(parts[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := names[uint32(id)]; !dup {
			names[uint32(id)] = parts[0]
		}
	}
	u.names, u.mtime, u.size = names, fi.ModTime(), fi.Size()
}
