package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// pager is a running pager that reads the command's output.
type pager struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

// pagerCommand picks the pager the way systemd's tools do: $SYSTEMD_PAGER,
// else $PAGER, else less; an empty value or "cat" means no pager.
func pagerCommand() (argv []string, ok bool) {
	for _, env := range []string{"SYSTEMD_PAGER", "PAGER"} {
		if v, set := os.LookupEnv(env); set {
			if v == "" || v == "cat" {
				return nil, false
			}
			return []string{"/bin/sh", "-c", v}, true
		}
	}
	for _, p := range []string{"less", "more"} {
		if path, err := exec.LookPath(p); err == nil {
			return []string{path}, true
		}
	}
	return nil, false
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// openPager sends the rest of the output through a pager when it goes to
// a terminal and --no-pager is not given. less gets $SYSTEMD_LESS, or
// FRXMK: quit if one screen is enough (F), keep colours (R), leave the
// screen as it is on exit (X), a long prompt (M) and quit on ^C (K).
func (g *globals) openPager() {
	out, isFile := g.out.(*os.File)
	if g.noPager || g.pager != nil || !isFile || !isTerminal(out) {
		return
	}
	argv, ok := pagerCommand()
	if !ok {
		return
	}
	less := os.Getenv("SYSTEMD_LESS")
	if less == "" {
		less = "FRXMK"
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	cmd.Env = append(os.Environ(), "LESS="+less)
	in, err := cmd.StdinPipe()
	if err != nil {
		return
	}
	if err := cmd.Start(); err != nil {
		// Without a pager the output still goes where it was going.
		in.Close()
		return
	}
	g.pager = &pager{cmd: cmd, in: in}
	g.out = in
}

// closePager ends the input and waits for the user to leave the pager.
func (g *globals) closePager() error {
	if g.pager == nil {
		return nil
	}
	g.pager.in.Close()
	err := g.pager.cmd.Wait()
	g.pager = nil
	if err != nil {
		return fmt.Errorf("pager: %w", err)
	}
	return nil
}
