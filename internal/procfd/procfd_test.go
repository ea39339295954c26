package procfd

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHoldsSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		pid     int
		inode   uint64
		want    bool
		wantErr error
	}{
		{"own socket", os.Getpid(), st.Ino, true, nil},
		{"a socket nobody holds", os.Getpid(), 0, false, nil},
		{"gone process", gone.Process.Pid, st.Ino, false, fs.ErrNotExist},
	} {
		got, err := HoldsSocket(tc.pid, func(inode uint64) bool { return inode == tc.inode })
		if got != tc.want || !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
			t.Errorf("%s: HoldsSocket = %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	unix.Close(fds[0])
	if held, _ := HoldsSocket(os.Getpid(), func(inode uint64) bool { return inode == st.Ino }); held {
		t.Error("the socket is still found once closed")
	}
}
