package daemon

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStoreFD: the descriptor reaches the notify socket with the
// FDSTORE message, as systemd receives it, on a path and on an abstract
// socket; and the same descriptor comes out (what is written to the
// received copy of a pipe's write end reaches the read end).
func TestStoreFD(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"abstract", func(t *testing.T) string { return "@contid-test-notify-" + filepath.Base(t.TempDir()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			listen := addr
			if strings.HasPrefix(addr, "@") {
				listen = "\x00" + addr[1:]
			}
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			t.Setenv("NOTIFY_SOCKET", addr)
			rd, wr, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			stored, err := storeFD("probe", wr)
			wr.Close()
			if err != nil || !stored {
				t.Fatalf("storeFD: %v, %v", stored, err)
			}
			buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4*4))
			n, oobn, _, _, err := ln.ReadMsgUnix(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=probe" {
				t.Errorf("message %q", got)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				t.Fatalf("control messages: %v %v", msgs, err)
			}
			fds, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(fds) != 1 {
				t.Fatalf("rights: %v %v", fds, err)
			}
			got := os.NewFile(uintptr(fds[0]), "received")
			if _, err := got.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
			got.Close()
			b := make([]byte, 2)
			if _, err := rd.Read(b); err != nil || !bytes.Equal(b, []byte("ok")) {
				t.Errorf("read %q, %v through the received descriptor", b, err)
			}
		})
	}
	t.Run("no-systemd", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if stored, err := storeFD("probe", os.Stdin); stored || err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v, %v", stored, err)
		}
	})
}
