package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// uploadKeys are the upload phase's metrics: how fast systemd's own
// journal shipping (systemd-journal-upload to systemd-journal-remote
// over HTTPS, --split-mode=host) moves contid's entries to a collector.
var uploadKeys = []string{"upload_events_per_s", "upload_cpu_s_per_1000_events"}

const (
	journalRemoteBin = "/lib/systemd/systemd-journal-remote"
	journalUploadBin = "/lib/systemd/systemd-journal-upload"
)

// uploadPhase writes a burst of contid entries (the forwarder's, for
// exec events of one container) into a private journald, then, in each
// round, ships the whole journal to a fresh collector and times it from
// upload's start until the collector holds the burst's last entry; the
// collector must then hold each entry exactly once. The figure is
// entries per second of that wall time; the CPU is upload's and the
// collector's together.
func uploadPhase(cfg *config, rep *report) error {
	fail := func(err error) error {
		for _, k := range uploadKeys {
			rep.unmeasured(k, err.Error())
		}
		return err
	}
	for _, b := range []string{journalRemoteBin, journalUploadBin} {
		if _, err := os.Stat(b); err != nil {
			return fail(fmt.Errorf("%s is not installed (make deps installs systemd-journal-remote)", b))
		}
	}
	n, rounds := 20000, 3
	if cfg.quick {
		n, rounds = 5000, 1
	}
	dir, err := tempDir("contid-bench-upload-")
	if err != nil {
		return fail(err)
	}
	jd, jdir, err := startJournald(dir)
	if err != nil {
		return fail(err)
	}
	defer jd.stop()
	id := contid.ID(4242)
	first := 100000
	if err := writeBurst(fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", jd.pid()), id, first, n); err != nil {
		return fail(err)
	}
	idMatch := "AUDIT_CONTAINER_ID=" + strconv.Itoa(int(id))
	last := "AUDIT_EVENT_ID=" + strconv.Itoa(first+n-1)
	if err := waitFor(60*time.Second, func() (bool, error) { return hasEntry(jdir, idMatch, last) }); err != nil {
		return fail(fmt.Errorf("the local journal: %w", err))
	}
	certs, err := makeCerts(filepath.Join(dir, "tls"))
	if err != nil {
		return fail(err)
	}

	var rates, cpus []float64
	var perRound []map[string]any
	for r := 0; r < rounds; r++ {
		rate, upCPU, remoteCPU, err := uploadRound(filepath.Join(dir, "round"+strconv.Itoa(r)), certs, jdir, idMatch, last, n)
		if err != nil {
			return fail(fmt.Errorf("round %d: %w", r+1, err))
		}
		progress("upload round %d: %d entries, %.0f/s, CPU per 1000: upload %.3f s, journal-remote %.3f s", r+1, n, rate, upCPU, remoteCPU)
		rates = append(rates, rate)
		cpus = append(cpus, upCPU+remoteCPU)
		perRound = append(perRound, map[string]any{"events_per_s": rate,
			"upload_cpu_s_per_1000_events": upCPU, "remote_cpu_s_per_1000_events": remoteCPU})
	}
	rs, cs := summarize(rates), summarize(cpus)
	rep.set("upload_events_per_s", rs.Median)
	rep.set("upload_cpu_s_per_1000_events", cs.Median)
	rep.detail("upload", map[string]any{
		"method": fmt.Sprintf("%d forwarder entries (exec events of one container) written to a private journald first; "+
			"each round a fresh systemd-journal-remote --listen-https=127.0.0.1 --split-mode=host and systemd-journal-upload "+
			"--directory (no saved state: the whole journal) with client certificates; timed from upload's start until the "+
			"burst's last entry is on the collector; CPU is upload's and journal-remote's user+sys", n),
		"events_per_s": rs,
		"rounds":       perRound,
	})
	return nil
}

// writeBurst sends n entries through the forwarder, each its own audit
// event (serials first...first+n-1).
func writeBurst(sock string, id contid.ID, first, n int) error {
	w, err := journal.NewWriter(sock)
	if err != nil {
		return err
	}
	defer w.Close()
	f := journal.NewForwarder(w, oneContainer{id}, journal.Config{})
	feed, err := audit.NewFeed(liveIn{id}, f)
	if err != nil {
		return err
	}
	for s := first; s < first+n; s++ {
		stamp := fmt.Sprintf("audit(1700000000.123:%d): ", s)
		for _, r := range []struct {
			typ  auparse.AuditMessageType
			text string
		}{
			{auparse.AUDIT_SYSCALL, `arch=c000003e syscall=59 success=yes exit=0 a0=55d0c8a0 a1=55d0c8b0 a2=7ffd a3=0 items=1 ppid=100 pid=1234 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="id" exe="/usr/bin/id" subj=unconfined key="contid"`},
			{auparse.AUDIT_EXECVE, `argc=2 a0="id" a1="-u"`},
			{auparse.AUDIT_PROCTITLE, `proctitle=6964002D75`},
		} {
			if err := feed.Push(r.typ, stamp+r.text); err != nil {
				return err
			}
		}
	}
	feed.Flush()
	if s := f.Stats(); s.Written != uint64(n) {
		return fmt.Errorf("forwarder wrote %d entries of %d: %+v", s.Written, n, s)
	}
	return nil
}

type oneContainer struct{ id contid.ID }

func (c oneContainer) Lookup(id contid.ID) (contid.Chain, journal.Labels, bool) {
	return contid.Chain{c.id}, journal.Labels{Name: "bench", Unit: "bench.scope"}, id == c.id
}

type liveIn struct{ id contid.ID }

func (a liveIn) Attribute(uint32, uint32, time.Time) (contid.ID, contid.Attribution, contid.Candidates, error) {
	return a.id, contid.LiveProcess, contid.Candidates{}, nil
}

// uploadRound ships the journal in jdir to a new collector and returns
// entries per second and upload's and the collector's CPU seconds per
// 1000 entries.
func uploadRound(dir string, c certFiles, jdir, idMatch, last string, n int) (rate, upCPU, remoteCPU float64, err error) {
	out := filepath.Join(dir, "remote")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, 0, 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	addr := l.Addr().String()
	l.Close()
	var remoteLog, uploadLog bytes.Buffer
	rcmd := exec.Command(journalRemoteBin, "--listen-https="+addr, "--key="+c.serverKey, "--cert="+c.serverCert,
		"--split-mode=host", "--output="+out+"/")
	rcmd.Stdout, rcmd.Stderr = &remoteLog, &remoteLog
	remote, err := startProc("journal-remote", rcmd)
	if err != nil {
		return 0, 0, 0, err
	}
	defer remote.stop()
	if err := waitFor(10*time.Second, func() (bool, error) {
		if remote.exited() {
			return false, fmt.Errorf("journal-remote exited: %s", remoteLog.String())
		}
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil, nil
	}); err != nil {
		return 0, 0, 0, err
	}
	ucmd := exec.Command(journalUploadBin, "--url=https://"+addr, "--key="+c.clientKey, "--cert="+c.clientCert,
		"--trust="+c.ca, "--directory="+jdir)
	ucmd.Stdout, ucmd.Stderr = &uploadLog, &uploadLog
	t0 := time.Now()
	upload, err := startProc("journal-upload", ucmd)
	if err != nil {
		return 0, 0, 0, err
	}
	defer upload.stop()
	if err := waitFor(5*time.Minute, func() (bool, error) {
		if upload.exited() {
			return false, fmt.Errorf("journal-upload exited: %s", uploadLog.String())
		}
		return hasEntry(out, idMatch, last)
	}); err != nil {
		return 0, 0, 0, err
	}
	elapsed := time.Since(t0)
	upCPU, err = cpuSeconds(upload.pid())
	if err != nil {
		return 0, 0, 0, err
	}
	remoteCPU, err = cpuSeconds(remote.pid())
	if err != nil {
		return 0, 0, 0, err
	}
	got, err := exec.Command("journalctl", "--directory="+out, "--no-pager", "-o", "cat", "--output-fields=AUDIT_EVENT_ID", idMatch).Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("counting the collector's entries: %w", err)
	}
	ids := strings.Fields(string(got))
	seen := map[string]bool{}
	for _, s := range ids {
		seen[s] = true
	}
	if len(ids) != n || len(seen) != n {
		return 0, 0, 0, fmt.Errorf("the collector holds %d entries (%d distinct) of %d", len(ids), len(seen), n)
	}
	return float64(n) / elapsed.Seconds(), upCPU / float64(n) * 1000, remoteCPU / float64(n) * 1000, nil
}

// hasEntry says whether the journal files in dir hold an entry with all
// the matches.
func hasEntry(dir string, matches ...string) (bool, error) {
	args := append([]string{"--directory=" + dir, "--no-pager", "-q", "-n", "1", "-o", "cat", "--output-fields=AUDIT_EVENT_ID"}, matches...)
	out, err := exec.Command("journalctl", args...).Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && len(out) == 0 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("journalctl %v: %w", args, err)
	}
	return len(bytes.TrimSpace(out)) > 0, nil
}

func waitFor(timeout time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type certFiles struct {
	ca, serverKey, serverCert, clientKey, clientCert string
}

// makeCerts makes a throwaway CA, a server certificate for 127.0.0.1
// and one client certificate with openssl.
func makeCerts(dir string) (certFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return certFiles{}, err
	}
	run := func(args ...string) error {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %v: %w: %s", args, err, out)
		}
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "san.ext"), []byte("subjectAltName=IP:127.0.0.1\n"), 0o644); err != nil {
		return certFiles{}, err
	}
	if err := run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=contid-bench-ca"); err != nil {
		return certFiles{}, err
	}
	for _, name := range []string{"server", "client"} {
		if err := run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name); err != nil {
			return certFiles{}, err
		}
		if err := run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", name+".pem", "-days", "1", "-extfile", "san.ext"); err != nil {
			return certFiles{}, err
		}
	}
	p := func(f string) string { return filepath.Join(dir, f) }
	return certFiles{ca: p("ca.pem"), serverKey: p("server.key"), serverCert: p("server.pem"), clientKey: p("client.key"), clientCert: p("client.pem")}, nil
}
