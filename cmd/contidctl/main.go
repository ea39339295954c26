// Command contidctl inspects and controls contidd over D-Bus: the system
// bus by default, or contidd's peer-to-peer socket (--p2p, --address, and
// automatically when the system bus is down).
//
// Options follow GNU and systemd conventions: they may come before or
// after the arguments, long options take "--name=value" or "--name value".
// The command tree is a cobra one: the same tree gives the help text and
// the bash, zsh and fish completions, so neither can drift from the
// commands the binary knows.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/contid/contid"
	"github.com/contid/contid/config"
	"github.com/contid/contid/dbus/client"
)

// Exit codes, as systemctl uses them.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 4
)

// errUsage marks a wrong command line: exit 2, with the command's usage.
var errUsage = errors.New("usage")

// usageErr is a usage error whose message is only the problem.
type usageErr string

func (e usageErr) Error() string        { return string(e) }
func (e usageErr) Is(target error) bool { return target == errUsage }

func usageError(format string, args ...any) error {
	return usageErr(fmt.Sprintf(format, args...))
}

// globals are the options every command takes.
type globals struct {
	json     jsonFormat
	address  string
	p2p      string
	noLegend bool
	noPager  bool
	// noAskPassword: never let polkit ask for a password (polkit.go).
	noAskPassword bool
	out           io.Writer
	pager         *pager
}

func (g *globals) register(fs *pflag.FlagSet) {
	fs.Var(&g.json, "json", "print JSON: pretty, short or off (a bare --json is pretty)")
	fs.Lookup("json").NoOptDefVal = string(jsonPretty)
	fs.StringVar(&g.address, "address", "", "D-Bus `ADDRESS` of contidd (a bus, or unix:path=/run/contid/bus)")
	fs.StringVar(&g.p2p, "p2p", "", "use contidd's peer-to-peer `SOCKET` (e.g. /run/contid/bus)")
	fs.BoolVar(&g.noLegend, "no-legend", false, "print no column headers and no footer")
	fs.BoolVar(&g.noPager, "no-pager", false, "do not pipe the output into a pager")
	fs.BoolVar(&g.noAskPassword, "no-ask-password", false, "do not ask for a password when polkit wants one")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// goFlagStyle matches the single-dash long options Go's flag package
// accepted, which scripts written for earlier versions still pass.
var goFlagStyle = regexp.MustCompile(`^-(json|address|p2p|id|name|allow-nesting|allow-bpf|allow-modules|join-policy|help)(=.*)?$`)

// gnuArgs rewrites "-address=x" to "--address=x" (up to a "--"), so that
// those scripts keep working with GNU-style parsing, where "-address"
// would be the short options -a -d -d ...
func gnuArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if goFlagStyle.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{out: stdout}
	root := newRoot(g)
	root.SetArgs(gnuArgs(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	// No deadline for the whole command: each D-Bus call has its own (the
	// client's), and a long fleet query or a prompt may take what it needs.
	cmd, err := root.ExecuteContextC(context.Background())
	if perr := g.closePager(); err == nil {
		err = perr
	}
	if err == nil {
		return exitOK
	}
	var status *exitStatus
	if errors.As(err, &status) {
		if status.msg != "" {
			fmt.Fprintf(stderr, "contidctl: %s\n", status.msg)
		}
		return status.code
	}
	if errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "contidctl: %s\nUsage: %s\nSee '%s --help'.\n", err, cmd.UseLine(), cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(stderr, "contidctl: %s\n", describe(err))
	switch {
	case errors.Is(err, contid.ErrNoSuchContainer), errors.Is(err, client.ErrNoSuchUnit),
		errors.Is(err, client.ErrNoSuchMachine), errors.Is(err, client.ErrNoSuchCgroup):
		return exitNotFound
	case errors.Is(err, contid.ErrInvalidArgs):
		return exitUsage
	}
	return exitFailure
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "contidctl",
		Short: "Inspect and assign audit container IDs",
		Long: "contidctl talks to contidd over D-Bus: the system bus by default, or the\n" +
			"peer-to-peer socket /run/contid/bus. Without a command it lists containers.\n\n" +
			"Exit status: 0 success, 1 failure, 2 usage error, 4 no such container, unit or machine.",
		Version:           config.Version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdList(cmd.Context(), g, false)
		},
	}
	root.SetVersionTemplate("contidctl {{.Version}}\n")
	// Defined here so that cobra adds no -v: systemd's tools have none.
	root.Flags().Bool("version", false, "print contidctl's version")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%v", err) })
	g.register(root.PersistentFlags())
	root.AddCommand(listCommand(g), statusCommand(g), showCommand(g))
	for _, kind := range tagKinds {
		root.AddCommand(tagCommand(g, kind))
	}
	root.AddCommand(whoCommand(g), eventsCommand(g), fleetCommand(g), treeCommand(g), monitorCommand(g), completionCommand(root))
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 0 {
		if !cmd.HasParent() {
			return usageError("unknown command %q", args[0])
		}
		return usageError("%s takes no arguments", cmd.Name())
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s takes %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError("%s takes at most %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

// describe turns an error into a sentence for a shell user.
func describe(err error) string {
	switch {
	case client.NeedsInteractiveAuth(err):
		return err.Error() + " (run contidctl on a terminal without --no-ask-password to be asked for a password, or as root)"
	case errors.Is(err, contid.ErrAccessDenied):
		return err.Error() + " (run as root, or ask for polkit authorization for org.contid1.tag)"
	}
	return err.Error()
}

// connect uses the system bus, or the peer-to-peer socket when asked,
// when the system bus is down, or when contidd is neither on the bus nor
// activatable there. --address works for both kinds: contidd's socket
// answers Hello like a bus.
func connect(g *globals) (*client.Client, error) {
	switch {
	case g.p2p != "":
		return client.ConnectP2P(g.p2p)
	case g.address != "":
		return client.ConnectBus(g.address)
	}
	c, err := client.ConnectBus("")
	if err == nil {
		if onBus(c) {
			return c, nil
		}
		c.Close()
		err = errors.New("contidd is not on the system bus")
	}
	c, perr := client.ConnectP2P(client.DefaultSocket)
	if perr != nil {
		return nil, fmt.Errorf("cannot reach contidd: %w; and %w", err, perr)
	}
	return c, nil
}

// onBus reports whether org.contid1 is owned or activatable on the bus.
func onBus(c *client.Client) bool {
	ctx, cancel := context.WithTimeout(context.Background(), client.DefaultCallTimeout)
	defer cancel()
	bus := c.Conn().BusObject()
	var owned bool
	if bus.CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, client.BusName).Store(&owned) == nil && owned {
		return true
	}
	var names []string
	if bus.CallWithContext(ctx, "org.freedesktop.DBus.ListActivatableNames", 0).Store(&names) == nil {
		for _, n := range names {
			if n == client.BusName {
				return true
			}
		}
	}
	return false
}
