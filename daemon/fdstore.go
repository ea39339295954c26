package daemon

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// auditSocketName names the unicast audit socket in systemd's file
// descriptor store.
const auditSocketName = "audit-unicast"

// auditSpoolName names the audit spool (a memfd) in the store.
const auditSpoolName = "audit-spool"

// storeFD hands f to systemd's file descriptor store under name
// (sd_notify "FDSTORE=1"), so the next contidd gets it back in
// $LISTEN_FDS. go-systemd's SdNotify sends text only, so the message with
// its descriptor is written here. It reports false when contidd does not
// run under systemd.
func storeFD(name string, f *os.File) (bool, error) {
	return notifyWithFDs("FDSTORE=1\nFDNAME="+name, int(f.Fd()))
}

// dropStoredFD asks systemd to close the descriptors stored under name.
func dropStoredFD(name string) (bool, error) {
	return notifyWithFDs("FDSTOREREMOVE=1\nFDNAME="+name, -1)
}

func notifyWithFDs(state string, fd int) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	// An unconnected socket: Go's net package refuses WriteMsgUnix on a
	// connected datagram socket. A leading "@" names an abstract socket,
	// which SockaddrUnix understands.
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("notify socket: %w", err)
	}
	defer unix.Close(s)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return false, fmt.Errorf("notify %q to %s: %w", state, path, err)
	}
	return true, nil
}
