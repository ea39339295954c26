package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

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
	tmp, err := os.MkdirTemp("", "contidctl-events-")
	if err != nil {
		return fmt.Errorf("folding the collector's entries: %w", err)
	}
	defer os.RemoveAll(tmp)

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
	_, rerr := readFolded(ctx, journalctl, args, func(e *fold.Entry) error {
		_, err := e.WriteTo(w)
		return err
	})
	w.Close()
	if err := jr.Wait(); err != nil {
		return fmt.Errorf("systemd-journal-remote: %w: %s", err, strings.TrimSpace(jrOut.String()))
	}
	if rerr != nil {
		return rerr
	}

	// -D, not --file: journal-remote starts a new file when one is full.
	show := exec.Command(journalctl, append([]string{"--directory=" + tmp}, append(o.which(), o.outputArgs(noPager)...)...)...)
	show.Stdin, show.Stdout, show.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A ^C reaches journalctl (and its pager) as the terminal's
	// foreground group; contidctl waits for it to end and then removes
	// the file. Caught, not ignored: an ignored signal would stay
	// ignored in journalctl. A SIGTERM or SIGHUP sent to contidctl alone
	// is passed on.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
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
			if err != nil {
				return fmt.Errorf("journalctl: %w", err)
			}
			return nil
		}
	}
}
