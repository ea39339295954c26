package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/journal/fold"
)

// journalRemoteCandidates are where distributions install
// systemd-journal-remote, which is not on PATH.
var journalRemoteCandidates = []string{"/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"}

func journalRemotePath() (string, error) {
	for _, p := range journalRemoteCandidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("systemd-journal-remote"); err == nil {
		return p, nil
	}
	return "", errors.New("systemd-journal-remote is not installed: --directory needs it to fold the entries " +
		"journal-upload sent twice (install systemd-journal-remote, or read the files unfolded with journalctl -D)")
}

// readFolded runs journalctl with args and -o export and hands on each
// entry it prints, leaving out the repeats (journal/fold). It returns
// how many it folded.
func readFolded(ctx context.Context, journalctl string, args []string, each func(*fold.Entry) error) (int, error) {
	jc := exec.CommandContext(ctx, journalctl, append(args, "-o", "export", "--no-pager")...)
	var stderr bytes.Buffer
	jc.Stderr = &stderr
	out, err := jc.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("run journalctl: %w", err)
	}
	if err := jc.Start(); err != nil {
		return 0, fmt.Errorf("run journalctl: %w", err)
	}
	in, seen := fold.NewReader(out), fold.NewSeen()
	folded := 0
	var rerr error
	for {
		e, err := in.Next()
		if err == io.EOF {
			break
		}
		if err == nil && seen.Repeat(e) {
			folded++
			continue
		}
		if err == nil {
			err = each(e)
		}
		if err != nil {
			rerr = err
			// Let journalctl end rather than block on a full pipe.
			_, _ = io.Copy(io.Discard, out)
			break
		}
	}
	if err := jc.Wait(); err != nil {
		return folded, fmt.Errorf("journalctl: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// journalctl's warnings (a file it could not read, say) are the
	// user's to see, as they would be without folding.
	_, _ = os.Stderr.Write(stderr.Bytes())
	if rerr != nil {
		return folded, fmt.Errorf("journalctl output: %w", rerr)
	}
	return folded, nil
}

// showFolded shows a collector's entries each once, printed by
// journalctl as the user asked: the entries the matches find are
// exported, folded, written into a journal file of their own by
// systemd-journal-remote (as the collector writes its files), and that
// file is what journalctl prints, with -n, -r, -o and the pager, so
// every output format looks as journalctl prints it and -n counts
// distinct entries. The file is removed when journalctl ends.
//
// --follow is refused before this: folding reads every entry first, and
// folding as entries arrive would need a journalctl following a file
// journal-remote is still writing.
func (o eventsOptions) showFolded(ctx context.Context, journalctl string, id contid.ID, noPager bool) error {
	remote, err := journalRemotePath()
	if err != nil {
		return err
	}
	// Caught from before the directory exists to after it is removed: a
	// signal that killed contidctl while it folds (which takes seconds on
	// a large collector) would leave the user's entries in TMPDIR.
	// Caught, not ignored: an ignored signal would stay ignored in
	// journalctl.
	// A signal ignored when contidctl started (SIGHUP under nohup,
	// SIGINT in a shell's background job) stays ignored, in contidctl
	// and in journalctl: Notify would make it end both.
	sig := make(chan os.Signal, 1)
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(s) {
			signal.Notify(sig, s)
		}
	}
	defer signal.Stop(sig)
	tmp, err := os.MkdirTemp("", "contidctl-events-")
	if err != nil {
		return fmt.Errorf("folding the collector's entries: %w", err)
	}
	defer os.RemoveAll(tmp)

	if err := o.fold(ctx, journalctl, remote, id, tmp, sig); err != nil {
		return err
	}

	// -D, not --file: journal-remote starts a new file when one is full.
	show := exec.Command(journalctl, append([]string{"--directory=" + tmp}, append(o.which(), o.outputArgs(noPager)...)...)...)
	show.Stdin, show.Stdout, show.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A ^C reaches journalctl (and its pager) as the terminal's
	// foreground group; contidctl waits for it to end and then removes
	// the file. A SIGTERM or SIGHUP sent to contidctl alone is passed on.
	if err := show.Start(); err != nil {
		return fmt.Errorf("run journalctl: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- show.Wait() }()
	for {
		select {
		case s := <-sig:
			if s != syscall.SIGINT {
				_ = show.Process.Signal(s)
			}
		case err := <-done:
			return journalctlExit(err)
		}
	}
}

// fold writes the entries the matches find, each once, into a journal
// in tmp, and checks that journal holds every one of them:
// systemd-journal-remote exits 0 after a write it could not make (a
// full TMPDIR) or an entry it skipped, having stored the entries before
// it, so its exit status alone would let a partial result through. A
// signal stops it, and the caller removes tmp.
func (o eventsOptions) fold(ctx context.Context, journalctl, remote string, id contid.ID, tmp string, sig <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caught := make(chan os.Signal, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case s := <-sig:
			caught <- s
			cancel()
		case <-stop:
		}
	}()
	interrupted := func() error {
		select {
		case s := <-caught:
			return signalExit(s.(syscall.Signal))
		default:
			return nil
		}
	}

	// --split-mode and --seal on the command line override a collector's
	// journal-remote.conf, which may set SplitMode=host (refused with a
	// file as the output) or Seal=yes.
	jr := exec.CommandContext(ctx, remote, "--output="+filepath.Join(tmp, "folded.journal"),
		"--split-mode=none", "--seal=false", "-")
	var jrOut bytes.Buffer
	jr.Stdout, jr.Stderr = &jrOut, &jrOut
	w, err := jr.StdinPipe()
	if err != nil {
		return fmt.Errorf("run systemd-journal-remote: %w", err)
	}
	if err := jr.Start(); err != nil {
		return fmt.Errorf("run systemd-journal-remote: %w", err)
	}
	args := append(o.matches(id), o.window()...)
	args = append(args, o.source.args()...)
	kept := uint64(0)
	var werr error
	_, rerr := readFolded(ctx, journalctl, args, func(e *fold.Entry) error {
		if _, err := e.WriteTo(w); err != nil {
			werr = err
			return err
		}
		kept++
		return nil
	})
	w.Close()
	jerr := jr.Wait()
	if err := interrupted(); err != nil {
		return err
	}
	jrMsg := strings.TrimSpace(jrOut.String())
	switch {
	case jerr != nil:
		return fmt.Errorf("systemd-journal-remote: %w: %s", jerr, jrMsg)
	case werr != nil:
		return fmt.Errorf("systemd-journal-remote stopped reading the entries after %d of them: %s", kept, jrMsg)
	case rerr != nil:
		return rerr
	}
	stored, err := journalEntries(tmp)
	if err != nil {
		return fmt.Errorf("folding the collector's entries: %w", err)
	}
	if stored != kept {
		return fmt.Errorf("systemd-journal-remote stored %d of the %d entries to show: %s", stored, kept, jrMsg)
	}
	return nil
}

// journalEntries sums the entry counts in the headers of the journal
// files in dir (n_entries, at byte 152 of a journal file's header:
// systemd's JOURNAL_FILE_FORMAT).
func journalEntries(dir string) (uint64, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.journal"))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		var h [160]byte
		_, err = io.ReadFull(f, h[:])
		f.Close()
		if err != nil || string(h[:8]) != "LPKSHHRH" {
			return 0, fmt.Errorf("%s: not a journal file (%v)", name, err)
		}
		n += binary.LittleEndian.Uint64(h[152:])
	}
	return n, nil
}

// exitStatus ends contidctl with a status of its own, the message (if
// any) already said: journalctl's, or that of a signal.
type exitStatus struct {
	code int
	msg  string
}

func (e *exitStatus) Error() string { return e.msg }

// signalExit is how a shell reports a program a signal ended: 128 and
// the signal's number.
func signalExit(s syscall.Signal) error {
	return &exitStatus{code: 128 + int(s), msg: "interrupted by " + unix.SignalName(s)}
}

// journalctlExit passes on how journalctl ended, as running it directly
// would: killed by SIGPIPE when its reader (head, the pager) went away
// is not an error to report; an exit status journalctl gave, it
// explained.
func journalctlExit(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err != nil {
			return fmt.Errorf("journalctl: %w", err)
		}
		return nil
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st := &exitStatus{code: 128 + int(ws.Signal())}
		// Any other signal (the OOM killer's SIGKILL) may have cut
		// the output short, which journalctl could not say.
		if ws.Signal() != syscall.SIGPIPE {
			st.msg = "journalctl: " + ee.Error()
		}
		return st
	}
	// journalctl said why.
	return &exitStatus{code: ee.ExitCode()}
}
