// Command contid-oci-hook names a container for contid from inside its
// manager's start: an OCI runtime hook (createRuntime stage) that podman,
// crun and runc run once the container's process and cgroup exist and
// before the payload's first exec. It reads the OCI state on stdin and
// the bundle's config.json, finds the container's cgroup and asks contidd
// to tag it (TagCgroup) with the container's name, manager, image and the
// manager's ID for it. A cgroup the kernel autotagged at mkdir (under
// machine.slice) already has its ID; the same call names it.
//
// The hook never holds a container's start for long: the whole exchange
// with contidd is bounded (--timeout, 2 s). When contidd cannot be reached
// or refuses, --on-error says whether the container starts anyway (pass,
// the default: its execs are still audited under its autotagged ID, only
// unnamed) or not (fail). Either way the miss goes to the system log
// (identifier contid-oci-hook) and to stderr, which the manager keeps in
// its own log.
package main

import (
	"context"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

const identifier = "contid-oci-hook"

// options is the hook's command line, as the hook JSON's args give it.
type options struct {
	onError string
	socket  string
	timeout time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := pflag.NewFlagSet(identifier, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.onError, "on-error", "pass", "when contidd cannot name the container: pass (start it anyway) or fail")
	fs.StringVar(&o.socket, "socket", client.DefaultSocket, "contidd's peer-to-peer socket")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "the longest the hook waits for contidd")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.onError != "pass" && o.onError != "fail" {
		return o, fmt.Errorf("--on-error takes pass or fail, not %q", o.onError)
	}
	if o.timeout <= 0 || o.timeout > time.Minute {
		return o, fmt.Errorf("--timeout must lie between 0 and 1m, not %s", o.timeout)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		// A broken hook file is the administrator's to fix; the
		// container is not held for it.
		report(syslog.LOG_ERR, "bad arguments in the hook configuration: %v", err)
		os.Exit(1)
	}
	desc, err := run(o)
	if err == nil {
		return
	}
	if o.onError == "fail" {
		report(syslog.LOG_ERR, "container %s not named for contid, and its start is refused (--on-error=fail): %v", desc, err)
		os.Exit(1)
	}
	report(syslog.LOG_WARNING, "container %s not named for contid; starting it anyway (--on-error=pass): %v", desc, err)
}

// run names the container described on stdin; desc says which container
// it is for the log.
func run(o options) (desc string, err error) {
	st, err := parseState(os.Stdin)
	if err != nil {
		return "?", err
	}
	desc = st.ID
	cfg, err := readConfig(st.Bundle)
	if err != nil {
		return desc, err
	}
	proc := procReader{root: "/proc"}
	cm, haveConmon := proc.conmonOf(os.Getpid(), st.ID)
	opts := labels(st, cfg, cm, haveConmon)
	if opts.Name != "" {
		desc = fmt.Sprintf("%s (%s)", opts.Name, st.ID)
	}
	cg, err := proc.cgroupOf(st.PID)
	if err != nil {
		return desc, err
	}
	cg = targetCgroup(cg, cfg)
	return desc, tag(o, cg, opts)
}

// tag asks contidd to tag cgroup cg, within o.timeout all told: dialling
// a socket-activated contidd that is still starting blocks in the
// handshake, which no context bounds.
func tag(o options, cg string, opts client.TagOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := client.ConnectP2P(o.socket)
		if err != nil {
			done <- fmt.Errorf("contidd is not reachable: %w", err)
			return
		}
		defer c.Close()
		if _, err := c.TagCgroup(ctx, cg, contid.Unset, opts); err != nil {
			done <- fmt.Errorf("tag cgroup %s: %w", cg, err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("contidd did not answer within %s", o.timeout)
	}
}

// report writes a message to the system log (the journal) and to stderr.
func report(prio syslog.Priority, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "%s: %s\n", identifier, msg)
	if w, err := syslog.New(prio|syslog.LOG_DAEMON, identifier); err == nil {
		_, _ = io.WriteString(w, msg)
		w.Close()
	}
}
