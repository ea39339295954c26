package daemon

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// auditSocketName names the unicast audit socket in systemd's file
// descriptor store.
const auditSocketName = "audit-unicast"

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
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify socket: %w", err)
	}
	defer conn.Close()
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if _, _, err := conn.WriteMsgUnix([]byte(state), oob, nil); err != nil {
		return false, fmt.Errorf("notify %q: %w", state, err)
	}
	return true, nil
}
