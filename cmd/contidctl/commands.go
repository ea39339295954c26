package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

const stateActive = "active"

func listCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List running containers (--all: exited ones too)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdList(cmd.Context(), g, all)
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list exited containers too")
	return cmd
}

// containers reads every container's properties, keeping the active ones
// unless all is set. A container removed between the list and its read
// is left out, as if the list had been taken a moment later.
func containers(ctx context.Context, c *client.Client, all bool) ([]client.ContainerInfo, error) {
	list, err := c.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	out := []client.ContainerInfo{}
	for _, e := range list {
		ci, err := c.Container(ctx, e.ID)
		if errors.Is(err, contid.ErrNoSuchContainer) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("container %d: %w", e.ID, err)
		}
		out = append(out, ci)
	}
	return visible(out, all), nil
}

// visible keeps the active containers, or all of them.
func visible(list []client.ContainerInfo, all bool) []client.ContainerInfo {
	if all {
		return list
	}
	out := []client.ContainerInfo{}
	for _, ci := range list {
		if ci.State == stateActive {
			out = append(out, ci)
		}
	}
	return out
}

func cmdList(ctx context.Context, g *globals, all bool) error {
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	list, err := containers(ctx, c, all)
	if err != nil {
		return err
	}
	g.openPager()
	if g.json != jsonOff {
		objs := make([]object, len(list))
		for i, ci := range list {
			objs[i] = containerProperties(ci)
		}
		return g.printJSON(objs)
	}
	rows := make([]string, len(list))
	for i, ci := range list {
		parent := "-"
		if ci.ParentID != 0 {
			parent = strconv.FormatUint(uint64(ci.ParentID), 10)
		}
		rows[i] = fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s", ci.ID, dash(ci.Name), ci.State, dash(ci.Manager), dash(ci.Unit), dash(ci.ControlGroup), parent)
	}
	writeContainerTable(g.out, g.noLegend, "ID\tNAME\tSTATE\tMANAGER\tUNIT\tCGROUP\tPARENT", rows)
	return nil
}

// resolve accepts an ID or a name. A number is an ID unless no container
// has that ID and one is named so (managers allow names of digits only:
// `docker run --name 42`); when both exist and differ, it says so rather
// than pick one. Names are labels, not keys: podman and Docker may each
// run a "web". A name two running containers have is refused with their
// IDs; among exited ones only, the latest record wins.
func resolve(ctx context.Context, c *client.Client, arg string) (contid.ID, error) {
	list, err := c.ListContainers(ctx)
	if err != nil {
		return 0, err
	}
	var named, byID, live contid.ID
	var running []string
	for _, e := range list {
		if e.Name != arg {
			continue
		}
		named = e.ID // the latest record of that name, unless one runs
		if ci, err := c.Container(ctx, e.ID); err == nil && ci.State == stateActive {
			live = e.ID
			running = append(running, fmt.Sprintf("%d (manager %s)", e.ID, dash(ci.Manager)))
		}
	}
	switch {
	case len(running) > 1:
		return 0, usageError("%d running containers are named %q: %s; give an ID", len(running), arg, strings.Join(running, ", "))
	case live != 0:
		named = live
	}
	if v, perr := strconv.ParseUint(arg, 10, 64); perr == nil {
		id, err := c.GetContainer(ctx, contid.ID(v))
		switch {
		case err == nil:
			byID = id
		case !errors.Is(err, contid.ErrNoSuchContainer) || named == 0:
			return 0, err
		}
	}
	switch {
	case byID != 0 && named != 0 && byID != named:
		return 0, usageError("%q is both container %d's ID and the name of container %d: give the other one's ID", arg, byID, named)
	case byID != 0:
		return byID, nil
	case named != 0:
		return named, nil
	}
	return 0, fmt.Errorf("%w: no container named %q", contid.ErrNoSuchContainer, arg)
}

// completeContainers offers the IDs and names of the running containers.
func completeContainers(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := connect(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		list, err := containers(cmd.Context(), c, false)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, ci := range list {
			if ci.Name != "" {
				out = append(out, cobra.CompletionWithDesc(ci.Name, fmt.Sprintf("container %d", ci.ID)))
			}
			out = append(out, cobra.CompletionWithDesc(strconv.FormatUint(uint64(ci.ID), 10), dash(ci.ControlGroup)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func statusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "status [ID|NAME]",
		Short:             "Show contidd's state, or one container's",
		Args:              maxArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdStatus(cmd.Context(), g, args)
		},
	}
}

func cmdStatus(ctx context.Context, g *globals, args []string) error {
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
		g.openPager()
		if g.json != jsonOff {
			return g.printJSON(mi)
		}
		fmt.Fprintf(g.out, "contidd %s\n", mi.Version)
		fmt.Fprintf(g.out, "  Enforcement: %s (%s)\n", mi.Enforcement, mi.EnforcementReason)
		fmt.Fprintf(g.out, "   Containers: %d active\n", mi.Containers)
		fmt.Fprintf(g.out, "       Events: %d written, %d lost, %d ambiguous\n", mi.EventsWritten, mi.EventsLost, mi.EventsAmbiguous)
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
	if pids == nil {
		pids = []uint32{}
	}
	g.openPager()
	if g.json != jsonOff {
		return g.printJSON(append(object(containerProperties(ci)), property{"Processes", "processes", pids}))
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
	if ci.Manager != "" {
		row("Manager", ci.Manager)
	}
	if ci.Image != "" {
		row("Image", ci.Image)
	}
	if ci.ManagerID != "" {
		row("ManagerID", ci.ManagerID)
	}
	if ci.UUID != "" {
		row("UUID", ci.UUID)
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
	if ci.AllowBPF || ci.AllowModules {
		row("Enforcing", exceptions(ci))
	}
	if ci.DenialsSuppressed > 0 {
		// The journal has them as counts, not entries: say so where a
		// reader of the status would look for what the container tried.
		row("Denials", fmt.Sprintf("%d not recorded one by one (counted in the journal)", ci.DenialsSuppressed))
	}
	row("Processes", strconv.Itoa(len(pids)))
	for _, pid := range pids {
		fmt.Fprintf(g.out, "%12s%d %s\n", "", pid, comm(pid))
	}
	return nil
}

func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func showCommand(g *globals) *cobra.Command {
	var props []string
	var valueOnly bool
	cmd := &cobra.Command{
		Use:   "show ID|NAME",
		Short: "Show a container's properties as KEY=VALUE",
		Long: "Show a container's properties as KEY=VALUE, or as JSON with --json.\n" +
			"Properties: Id Name State Unit Manager Image ManagerID UUID ControlGroup\n" +
			"CgroupId ParentId Chain Depth CreatedUSec OwnerUID OwnerPID Flags Object.",
		Args:              exactArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdShow(cmd.Context(), g, args[0], props, valueOnly)
		},
	}
	cmd.Flags().StringSliceVarP(&props, "property", "p", nil, "show only the property `NAME` (repeat it, or separate names by commas)")
	cmd.Flags().BoolVar(&valueOnly, "value", false, "print only the values, without NAME=")
	_ = cmd.RegisterFlagCompletionFunc("property", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var names []cobra.Completion
		for _, p := range containerProperties(client.ContainerInfo{}) {
			names = append(names, p.name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func cmdShow(ctx context.Context, g *globals, arg string, want []string, valueOnly bool) error {
	// A wrong -p is a usage error before any connection is made.
	if _, err := selectProperties(containerProperties(client.ContainerInfo{}), want); err != nil {
		return err
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := resolve(ctx, c, arg)
	if err != nil {
		return err
	}
	ci, err := c.Container(ctx, id)
	if err != nil {
		return err
	}
	props, err := selectProperties(containerProperties(ci), want)
	if err != nil {
		return err
	}
	g.openPager()
	if g.json != jsonOff {
		return g.printJSON(object(props))
	}
	writeProperties(g.out, props, valueOnly)
	return nil
}

// tagKind is one of the Tag* methods, by what it takes.
type tagKind struct {
	name, arg, help string
	complete        func() []cobra.Completion
}

var tagKinds = []tagKind{
	{"unit", "UNIT", "Tag a systemd unit's cgroup", func() []cobra.Completion {
		return commandWords("systemctl", "list-units", "--plain", "--no-legend", "--type=service,scope")
	}},
	{"machine", "MACHINE", "Tag a machined machine", func() []cobra.Completion {
		return commandWords("machinectl", "list", "--no-legend")
	}},
	{"cgroup", "CGROUP", "Tag a cgroup (path relative to the cgroup2 root)", nil},
	{"pid", "PID", "Tag one fresh process (one thread, no children)", nil},
}

func tagCommand(g *globals, kind tagKind) *cobra.Command {
	var id uint64
	var o client.TagOptions
	cmd := &cobra.Command{
		Use:   "tag-" + kind.name + " " + kind.arg,
		Short: kind.help,
		Args:  exactArgs(1),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) != 0 || kind.complete == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return kind.complete(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdTag(cmd.Context(), g, kind.name, args[0], contid.ID(id), o)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&id, "id", 0, "audit container `ID` to use (0: let contidd allocate)")
	f.StringVar(&o.Name, "name", "", "container `NAME`")
	f.StringVar(&o.UUID, "uuid", "", "the container's instance `UUID` (default: one contidd draws)")
	f.BoolVar(&o.AllowNesting, "allow-nesting", false, "let the container tag cgroups in its own subtree")
	f.BoolVar(&o.AllowBPF, "allow-bpf", false, "let the container load BPF programs in enforcing mode")
	f.BoolVar(&o.AllowModules, "allow-modules", false, "let the container load kernel modules in enforcing mode")
	f.StringVar(&o.JoinPolicy, "join-policy", "", "`tag` or ignore: whether processes joining later are tagged")
	_ = cmd.RegisterFlagCompletionFunc("join-policy", cobra.FixedCompletions([]cobra.Completion{"tag", "ignore"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func cmdTag(ctx context.Context, g *globals, kind, arg string, want contid.ID, o client.TagOptions) error {
	if o.JoinPolicy != "" && o.JoinPolicy != "tag" && o.JoinPolicy != "ignore" {
		return fmt.Errorf("%w: --join-policy must be tag or ignore", contid.ErrInvalidArgs)
	}
	var pid uint64
	if kind == "pid" {
		var err error
		if pid, err = strconv.ParseUint(arg, 10, 32); err != nil {
			return fmt.Errorf("%w: %q is not a PID", contid.ErrInvalidArgs, arg)
		}
	}
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, done := prepareAsk(ctx, g, c.AllowInteractiveAuthorization)
	defer done()
	var id contid.ID
	switch kind {
	case "unit":
		id, err = c.TagUnit(ctx, arg, want, o)
	case "machine":
		id, err = c.TagMachine(ctx, arg, want, o)
	case "cgroup":
		id, err = c.TagCgroup(ctx, arg, want, o)
	case "pid":
		id, err = c.TagPID(ctx, uint32(pid), want, o)
	}
	if err != nil {
		return err
	}
	if g.json != jsonOff {
		return g.printJSON(object{{"Id", "id", uint64(id)}, {"Object", "object", string(client.ContainerPath(id))}})
	}
	fmt.Fprintf(g.out, "%d\n", id)
	return nil
}

func whoCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "who PID",
		Short:             "Show the container a process is in",
		Args:              exactArgs(1),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdWho(cmd.Context(), g, args[0])
		},
	}
}

func cmdWho(ctx context.Context, g *globals, arg string) error {
	pid, err := strconv.ParseUint(arg, 10, 32)
	if err != nil {
		return fmt.Errorf("%w: %q is not a PID", contid.ErrInvalidArgs, arg)
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
	if g.json != jsonOff {
		props := append(object{{"Pid", "pid", pid}}, containerProperties(ci)...)
		return g.printJSON(props)
	}
	name := ""
	if ci.Name != "" {
		name = " (" + ci.Name + ")"
	}
	fmt.Fprintf(g.out, "PID %d is in container %d%s, contid=%s\n", pid, ci.ID, name, ci.ChainString)
	return nil
}

// exceptions says what enforcing mode lets this container do that it
// refuses other tagged tasks unless contid.conf allows it for all.
func exceptions(ci client.ContainerInfo) string {
	var what []string
	if ci.AllowBPF {
		what = append(what, "BPF programs")
	}
	if ci.AllowModules {
		what = append(what, "kernel modules")
	}
	return "may load " + strings.Join(what, " and ")
}
