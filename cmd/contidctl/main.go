// Command contidctl inspects and controls contidd over D-Bus: the system
// bus by default, or contidd's peer-to-peer socket (--p2p, --address, and
// automatically when the system bus is down).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// Exit codes, as systemctl uses them.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 4
)

var errUsage = errors.New("usage")

type globals struct {
	json    bool
	address string
	p2p     string
	out     io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.BoolVar(&g.json, "json", g.json, "print JSON")
	fs.StringVar(&g.address, "address", g.address, "D-Bus `address` of contidd (a bus, or unix:path=/run/contid/bus)")
	fs.StringVar(&g.p2p, "p2p", g.p2p, "use contidd's peer-to-peer `socket` (e.g. /run/contid/bus)")
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error
	flags            func(fs *flag.FlagSet)
}

var tagFlags struct {
	id           uint64
	name         string
	allowNesting bool
	joinPolicy   string
}

func addTagFlags(fs *flag.FlagSet) {
	fs.Uint64Var(&tagFlags.id, "id", 0, "audit container `ID` to use (0: let contidd allocate)")
	fs.StringVar(&tagFlags.name, "name", "", "container `name`")
	fs.BoolVar(&tagFlags.allowNesting, "allow-nesting", false, "let the container tag cgroups in its own subtree")
	fs.StringVar(&tagFlags.joinPolicy, "join-policy", "", "`tag` or ignore: whether processes joining later are tagged")
}

func commands() []command {
	return []command{
		{"list", "", "List containers", cmdList, nil},
		{"status", "[ID|NAME]", "Show contidd's state, or one container's", cmdStatus, nil},
		{"show", "ID", "Show a container's properties as KEY=VALUE", cmdShow, nil},
		{"tag-unit", "UNIT", "Tag a systemd unit's cgroup", cmdTag("unit"), addTagFlags},
		{"tag-machine", "MACHINE", "Tag a machined machine", cmdTag("machine"), addTagFlags},
		{"tag-cgroup", "CGROUP", "Tag a cgroup (path relative to the cgroup2 root)", cmdTag("cgroup"), addTagFlags},
		{"tag-pid", "PID", "Tag one fresh process (one thread, no children)", cmdTag("pid"), addTagFlags},
		{"who", "PID", "Show the container a process is in", cmdWho, nil},
		{"events", "ID [-f] [-n N] [-o FORMAT]", "Show the container's audit events from the journal", nil, nil},
		{"completion", "bash", "Print a shell completion script", nil, nil},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: contidctl [--json] [--address ADDR | --p2p SOCKET] COMMAND [ARGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nExit status: 0 success, 1 failure, 2 usage error, 4 no such container, unit or machine.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{out: stdout}
	top := flag.NewFlagSet("contidctl", flag.ContinueOnError)
	top.SetOutput(stderr)
	g.register(top)
	top.Usage = func() { usage(stderr) }
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		return exitUsage
	}
	args = top.Args()
	if len(args) == 0 {
		args = []string{"list"}
	}
	name, args := args[0], args[1:]
	switch name {
	case "help":
		usage(stdout)
		return exitOK
	case "events":
		return cmdEvents(args, stderr)
	case "completion":
		if len(args) != 1 || args[0] != "bash" {
			fmt.Fprintln(stderr, "contidctl: usage: contidctl completion bash")
			return exitUsage
		}
		fmt.Fprint(stdout, bashCompletion())
		return exitOK
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
			break
		}
	}
	if cmd == nil || cmd.run == nil {
		fmt.Fprintf(stderr, "contidctl: unknown command %q (see contidctl --help)\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet("contidctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: contidctl %s %s\n%s.\n\nOptions:\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cmd.run(ctx, g, fs, fs.Args())
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fs.Usage()
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

// describe turns an error into a sentence for a shell user.
func describe(err error) string {
	switch {
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
		return nil, fmt.Errorf("cannot reach contidd: %v; and %v", err, perr)
	}
	return c, nil
}

// onBus reports whether org.contid1 is owned or activatable on the bus.
func onBus(c *client.Client) bool {
	bus := c.Conn().BusObject()
	var owned bool
	if bus.Call("org.freedesktop.DBus.NameHasOwner", 0, client.BusName).Store(&owned) == nil && owned {
		return true
	}
	var names []string
	if bus.Call("org.freedesktop.DBus.ListActivatableNames", 0).Store(&names) == nil {
		for _, n := range names {
			if n == client.BusName {
				return true
			}
		}
	}
	return false
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdList(ctx context.Context, g *globals, _ *flag.FlagSet, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	list, err := c.ListContainers(ctx)
	if err != nil {
		return err
	}
	if g.json {
		if list == nil {
			list = []client.ListEntry{}
		}
		return printJSON(g.out, list)
	}
	tw := tabwriter.NewWriter(g.out, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tUNIT\tCGROUP\tPARENT")
	for _, e := range list {
		parent := "-"
		if e.Parent != 0 {
			parent = strconv.FormatUint(uint64(e.Parent), 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.ID, dash(e.Name), dash(e.Unit), dash(e.Cgroup), parent)
	}
	tw.Flush()
	fmt.Fprintf(g.out, "\n%d containers listed.\n", len(list))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resolve accepts an ID or a name.
func resolve(ctx context.Context, c *client.Client, arg string) (contid.ID, error) {
	if v, err := strconv.ParseUint(arg, 10, 64); err == nil {
		return c.GetContainer(ctx, contid.ID(v))
	}
	list, err := c.ListContainers(ctx)
	if err != nil {
		return 0, err
	}
	var found contid.ID
	for _, e := range list {
		if e.Name == arg {
			found = e.ID // the latest record of that name wins
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("%w: no container named %q", contid.ErrNoSuchContainer, arg)
	}
	return found, nil
}

func cmdStatus(ctx context.Context, g *globals, _ *flag.FlagSet, args []string) error {
	if len(args) > 1 {
		return errUsage
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	if len(args) == 0 {
		mi, err := c.Manager(ctx)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.out, mi)
		}
		fmt.Fprintf(g.out, "contidd %s\n", mi.Version)
		fmt.Fprintf(g.out, "  Enforcement: %s (%s)\n", mi.Enforcement, mi.EnforcementReason)
		fmt.Fprintf(g.out, "   Containers: %d active\n", mi.Containers)
		fmt.Fprintf(g.out, "       Events: %d written, %d lost\n", mi.EventsWritten, mi.EventsLost)
		fmt.Fprintf(g.out, " Audit stream: %s\n", mi.AuditStream)
		fmt.Fprintf(g.out, "  Audit rules: %d of contid's loaded, %d missing\n", mi.AuditRulesLoaded, len(mi.AuditRulesMissing))
		for _, line := range mi.AuditRulesMissing {
			fmt.Fprintf(g.out, "               missing: %s\n", line)
		}
		return nil
	}
	id, err := resolve(ctx, c, args[0])
	if err != nil {
		return err
	}
	ci, err := c.Container(ctx, id)
	if err != nil {
		return err
	}
	pids, err := c.ListProcesses(ctx, id)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.out, struct {
			client.ContainerInfo
			Processes []uint32 `json:"processes"`
		}{ci, nonNil(pids)})
	}
	title := strconv.FormatUint(uint64(ci.ID), 10)
	if ci.Name != "" {
		title += " - " + ci.Name
	}
	fmt.Fprintln(g.out, title)
	row := func(k, v string) { fmt.Fprintf(g.out, "%10s: %s\n", k, v) }
	row("Chain", "contid="+ci.ChainString)
	row("State", ci.State)
	if ci.CreatedUSec != 0 {
		row("Since", time.UnixMicro(int64(ci.CreatedUSec)).Format("Mon 2006-01-02 15:04:05 MST"))
	}
	if ci.Unit != "" {
		row("Unit", ci.Unit)
	}
	if ci.ControlGroup != "" {
		row("CGroup", ci.ControlGroup)
	}
	if ci.OwnerPID != 0 {
		row("Owner", fmt.Sprintf("PID %d (UID %d)", ci.OwnerPID, ci.OwnerUID))
	}
	if len(ci.Flags) > 0 {
		row("Flags", strings.Join(ci.Flags, " "))
	}
	row("Processes", strconv.Itoa(len(pids)))
	for _, pid := range pids {
		fmt.Fprintf(g.out, "%12s%d %s\n", "", pid, comm(pid))
	}
	return nil
}

func nonNil(p []uint32) []uint32 {
	if p == nil {
		return []uint32{}
	}
	return p
}

func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func cmdShow(ctx context.Context, g *globals, _ *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := resolve(ctx, c, args[0])
	if err != nil {
		return err
	}
	ci, err := c.Container(ctx, id)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.out, ci)
	}
	chain := make([]string, len(ci.Chain))
	for i, x := range ci.Chain {
		chain[i] = strconv.FormatUint(uint64(x), 10)
	}
	for _, kv := range [][2]string{
		{"Id", strconv.FormatUint(uint64(ci.ID), 10)}, {"Name", ci.Name}, {"Unit", ci.Unit},
		{"ControlGroup", ci.ControlGroup}, {"CgroupId", strconv.FormatUint(ci.CgroupID, 10)},
		{"ParentId", strconv.FormatUint(uint64(ci.ParentID), 10)}, {"Chain", strings.Join(chain, " ")},
		{"Depth", strconv.FormatUint(uint64(ci.Depth), 10)}, {"State", ci.State},
		{"CreatedUSec", strconv.FormatUint(ci.CreatedUSec, 10)}, {"OwnerUID", strconv.FormatUint(uint64(ci.OwnerUID), 10)},
		{"OwnerPID", strconv.FormatUint(uint64(ci.OwnerPID), 10)}, {"Flags", strings.Join(ci.Flags, " ")},
	} {
		fmt.Fprintf(g.out, "%s=%s\n", kv[0], kv[1])
	}
	return nil
}

func cmdTag(kind string) func(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	return func(ctx context.Context, g *globals, _ *flag.FlagSet, args []string) error {
		if len(args) != 1 {
			return errUsage
		}
		if tagFlags.joinPolicy != "" && tagFlags.joinPolicy != "tag" && tagFlags.joinPolicy != "ignore" {
			return fmt.Errorf("%w: --join-policy must be tag or ignore", contid.ErrInvalidArgs)
		}
		var pid uint64
		if kind == "pid" {
			var err error
			if pid, err = strconv.ParseUint(args[0], 10, 32); err != nil {
				return fmt.Errorf("%w: %q is not a PID", contid.ErrInvalidArgs, args[0])
			}
		}
		c, err := connect(g)
		if err != nil {
			return err
		}
		defer c.Close()
		o := client.TagOptions{Name: tagFlags.name, AllowNesting: tagFlags.allowNesting, JoinPolicy: tagFlags.joinPolicy}
		want := contid.ID(tagFlags.id)
		var id contid.ID
		switch kind {
		case "unit":
			id, err = c.TagUnit(ctx, args[0], want, o)
		case "machine":
			id, err = c.TagMachine(ctx, args[0], want, o)
		case "cgroup":
			id, err = c.TagCgroup(ctx, args[0], want, o)
		case "pid":
			id, err = c.TagPID(ctx, uint32(pid), want, o)
		}
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.out, map[string]any{"id": id, "object": client.ContainerPath(id)})
		}
		fmt.Fprintf(g.out, "%d\n", id)
		return nil
	}
}

func cmdWho(ctx context.Context, g *globals, _ *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	pid, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return fmt.Errorf("%w: %q is not a PID", contid.ErrInvalidArgs, args[0])
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := c.GetContainerByPID(ctx, uint32(pid))
	if err != nil {
		return err
	}
	ci, err := c.Container(ctx, id)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.out, map[string]any{"pid": pid, "id": ci.ID, "name": ci.Name, "chain": ci.ChainString})
	}
	name := ""
	if ci.Name != "" {
		name = " (" + ci.Name + ")"
	}
	fmt.Fprintf(g.out, "PID %d is in container %d%s, contid=%s\n", pid, ci.ID, name, ci.ChainString)
	return nil
}

// cmdEvents runs journalctl for the container. The match on contidd's own
// unit is always there: any process may log a field called
// AUDIT_CONTAINER_ID, only contidd's entries are trustworthy.
func cmdEvents(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("contidctl events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	follow := fs.Bool("f", false, "follow")
	lines := fs.String("n", "", "show the last `N` entries")
	output := fs.String("o", "", "journalctl output `format` (short, json, verbose, ...)")
	asJSON := fs.Bool("json", false, "same as -o json")
	fs.String("address", "", "ignored (events come from the journal)")
	fs.String("p2p", "", "ignored (events come from the journal)")
	var id string
	// Accept the ID before or after the options.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "contidctl: usage: contidctl events ID [-f] [-n N] [-o FORMAT]")
		return exitUsage
	}
	if v, err := strconv.ParseUint(id, 10, 64); err != nil || v == 0 || contid.ID(v) == contid.Invalid {
		fmt.Fprintf(stderr, "contidctl: %q is not a container ID\n", id)
		return exitUsage
	}
	jargs := []string{"AUDIT_CONTAINER_ID=" + id, "_SYSTEMD_UNIT=contidd.service"}
	if *follow {
		jargs = append(jargs, "-f")
	}
	if *lines != "" {
		jargs = append(jargs, "-n", *lines)
	}
	if *asJSON {
		*output = "json"
	}
	if *output != "" {
		jargs = append(jargs, "-o", *output)
	}
	path, err := exec.LookPath("journalctl")
	if err != nil {
		fmt.Fprintln(stderr, "contidctl: journalctl is not installed")
		return exitFailure
	}
	if err := syscall.Exec(path, append([]string{"journalctl"}, jargs...), os.Environ()); err != nil {
		fmt.Fprintf(stderr, "contidctl: run journalctl: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func bashCompletion() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return `# bash completion for contidctl
_contidctl() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    for ((i=1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break;; esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "` + strings.Join(names, " ") + ` --json --address --p2p --help" -- "$cur"))
        return
    fi
    case $cmd in
        status|show|events)
            COMPREPLY=($(compgen -W "$(contidctl list --json 2>/dev/null | sed -n 's/.*"\(id\|name\)": "\{0,1\}\([^",]*\).*/\2/p')" -- "$cur"));;
        tag-unit)
            COMPREPLY=($(compgen -W "$(systemctl list-units --plain --no-legend --type=service,scope 2>/dev/null | awk '{print $1}')" -- "$cur"));;
        tag-machine)
            COMPREPLY=($(compgen -W "$(machinectl list --no-legend 2>/dev/null | awk '{print $1}')" -- "$cur"));;
        tag-pid|who)
            COMPREPLY=($(compgen -W "$(ps -eo pid= 2>/dev/null)" -- "$cur"));;
        completion)
            COMPREPLY=($(compgen -W "bash" -- "$cur"));;
    esac
}
complete -F _contidctl contidctl
`
}
