package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Where Debian's systemd-journal-remote package installs the two
// programs; they are not on PATH.
const (
	journalRemoteBinary = "/lib/systemd/systemd-journal-remote"
	journalUploadBinary = "/lib/systemd/systemd-journal-upload"
)

// RequireJournalRemote skips the test unless it runs as root with
// systemd's journal shipping programs (and openssl, for their
// certificates) installed.
func RequireJournalRemote(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "openssl", "journalctl")
	for _, b := range []string{journalRemoteBinary, journalUploadBinary} {
		if _, err := os.Stat(b); err != nil {
			Missing(t, "skipped: %s is not installed (`make deps` installs systemd-journal-remote)", b)
		}
	}
}

// TLS is a throwaway certificate authority with a server certificate
// for 127.0.0.1 and one client certificate per host name.
type TLS struct {
	CA                    string
	ServerKey, ServerCert string
	dir                   string
}

// NewTLS makes the CA, the server's certificate and a client
// certificate (CN=name) for each name, in a temp dir.
func NewTLS(t testing.TB, clients ...string) *TLS {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v: %s", args, err, out)
		}
	}
	run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=contid-test-ca")
	ext := filepath.Join(dir, "san.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range append([]string{"server"}, clients...) {
		run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", n+".key", "-out", n+".csr", "-subj", "/CN="+n)
		run("x509", "-req", "-in", n+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", n+".pem", "-days", "1", "-extfile", ext)
	}
	return &TLS{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ServerCert: filepath.Join(dir, "server.pem"),
		dir:        dir,
	}
}

// Client is the key and certificate files of a client named to NewTLS.
func (c *TLS) Client(name string) (key, cert string) {
	return filepath.Join(c.dir, name+".key"), filepath.Join(c.dir, name+".pem")
}

// JournalRemote is a systemd-journal-remote listening for HTTPS uploads
// on 127.0.0.1 and filing each sending host's entries in its own file
// (--split-mode=host) under Dir. It can be stopped and started again on
// the same port, as a collector going away for a while.
type JournalRemote struct {
	Dir string
	// URL is what systemd-journal-upload --url takes.
	URL string
	// ChecksClients says whether this build verifies client
	// certificates (--trust). Without it, --split-mode=host names a
	// host's file after the peer's IP address, not its certificate.
	ChecksClients bool

	t      testing.TB
	args   []string
	output *lockedBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartJournalRemote starts the collector and stops it when the test
// ends.
func StartJournalRemote(t testing.TB, c *TLS) *JournalRemote {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &JournalRemote{
		Dir:    filepath.Join(t.TempDir(), "remote"),
		URL:    "https://127.0.0.1:" + strconv.Itoa(port),
		t:      t,
		output: &lockedBuffer{},
	}
	if err := os.Mkdir(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.args = []string{"--listen-https=127.0.0.1:" + strconv.Itoa(port),
		"--key=" + c.ServerKey, "--cert=" + c.ServerCert,
		"--split-mode=host", "--output=" + r.Dir + "/"}
	// Debian 12's build has no GnuTLS and refuses --trust ("Option
	// --trust is not available.") before it looks at --help.
	if exec.Command(journalRemoteBinary, "--trust="+c.CA, "--help").Run() == nil {
		r.ChecksClients = true
		r.args = append(r.args, "--trust="+c.CA)
	}
	t.Cleanup(r.Stop)
	r.Start()
	return r
}

// Start starts the collector again after Stop; it returns once it
// accepts connections.
func (r *JournalRemote) Start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatal("journal-remote is already running")
	}
	cmd := exec.Command(journalRemoteBinary, r.args...)
	cmd.Stdout, cmd.Stderr = r.output, r.output
	if err := startTiedToTest(cmd); err != nil {
		r.t.Fatalf("starting journal-remote: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	addr := r.URL[len("https://"):]
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			r.t.Fatalf("journal-remote exited early: %s", r.output.String())
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("journal-remote did not listen within 10s: %s", r.output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the collector (by PID) as systemd would, with SIGTERM, so
// that it closes its journal files.
func (r *JournalRemote) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// Log is what journal-remote printed so far.
func (r *JournalRemote) Log() string { return r.output.String() }

// JournalUpload runs systemd-journal-upload from a journal directory
// to a collector, restarting it after RestartDelay whenever it exits,
// as its unit's Restart= does: upload exits at the first failed request
// (a collector that is down) and resumes from its saved cursor.
type JournalUpload struct {
	mu     sync.Mutex
	starts int
	output *lockedBuffer
	cmd    *exec.Cmd
	stop   chan struct{}
	done   chan struct{}
}

// StartJournalUpload uploads the journal files in dir to r as client
// name, saving its cursor in a temp file, until the test ends.
func StartJournalUpload(t testing.TB, r *JournalRemote, c *TLS, name, dir string, restartDelay time.Duration) *JournalUpload {
	t.Helper()
	key, cert := c.Client(name)
	args := []string{"--url=" + r.URL, "--key=" + key, "--cert=" + cert, "--trust=" + c.CA,
		"--save-state=" + filepath.Join(t.TempDir(), "state"), "--directory=" + dir}
	u := &JournalUpload{output: &lockedBuffer{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for {
			cmd := exec.Command(journalUploadBinary, args...)
			cmd.Stdout, cmd.Stderr = u.output, u.output
			u.mu.Lock()
			select {
			case <-u.stop:
				u.mu.Unlock()
				return
			default:
			}
			err := startTiedToTest(cmd)
			if err == nil {
				u.cmd = cmd
				u.starts++
			}
			u.mu.Unlock()
			if err != nil {
				fmt.Fprintf(u.output, "starting journal-upload: %v\n", err)
			} else {
				err = cmd.Wait()
				fmt.Fprintf(u.output, "journal-upload exited: %v\n", err)
			}
			select {
			case <-u.stop:
				return
			case <-time.After(restartDelay):
			}
		}
	}()
	t.Cleanup(u.Stop)
	return u
}

// Stop ends upload (by PID) and its restarts.
func (u *JournalUpload) Stop() {
	u.mu.Lock()
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	if u.cmd != nil {
		// Signal knows a process already waited for and does nothing.
		_ = u.cmd.Process.Signal(syscall.SIGTERM)
	}
	u.mu.Unlock()
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		u.mu.Lock()
		if u.cmd != nil {
			_ = u.cmd.Process.Kill()
		}
		u.mu.Unlock()
		<-u.done
	}
}

// StartCount is how many times upload has been started so far.
func (u *JournalUpload) StartCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.starts
}

// Log is what upload printed so far, with a line for each exit.
func (u *JournalUpload) Log() string { return u.output.String() }

// WriteJournalFile writes entries given in the journal export format
// into a new journal file, fields starting with '_' as given: what root
// on any host can make and upload.
func WriteJournalFile(t testing.TB, path, export string) {
	t.Helper()
	cmd := exec.Command(journalRemoteBinary, "--output="+path, "-")
	cmd.Stdin = strings.NewReader(export)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("journal-remote --output=%s: %v: %s", path, err, out)
	}
}

// UploadFile uploads one journal file to r as client name and returns
// once upload has sent all of it.
func UploadFile(t testing.TB, r *JournalRemote, c *TLS, name, file string) {
	t.Helper()
	key, cert := c.Client(name)
	cmd := exec.Command(journalUploadBinary, "--url="+r.URL, "--key="+key, "--cert="+cert,
		"--trust="+c.CA, "--file="+file, "--follow=no")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("journal-upload --file=%s: %v: %s", file, err, out)
	}
}
