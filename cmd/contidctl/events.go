package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/contid/contid"
)

// eventsCommand runs journalctl for the container.
func eventsCommand(g *globals) *cobra.Command {
	var o eventsOptions
	cmd := &cobra.Command{
		Use:   "events ID|NAME|--uuid=UUID",
		Short: "Show the container's audit events from the journal",
		Long: "Show the container's audit events from the journal: journalctl with the\n" +
			"container's match and, always, the match on contidd's own unit. A NAME is\n" +
			"looked up in contidd; an ID or a UUID needs no contidd.",
		Args:              maxArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id contid.ID
			switch {
			case o.uuid != "" && (len(args) != 0 || o.within):
				return usageError("--uuid names the container: give no ID or NAME, and no --within")
			case o.uuid == "" && len(args) != 1:
				return usageError("give the container's ID or NAME, or --uuid")
			case o.uuid == "":
				var err error
				if id, err = eventsContainer(cmd, g, args[0]); err != nil {
					return err
				}
			}
			path, err := exec.LookPath("journalctl")
			if err != nil {
				return fmt.Errorf("journalctl is not installed")
			}
			if o.source.directory != "" {
				if o.follow {
					return usageError("--follow cannot be given with --directory: contidctl folds the entries " +
						"journal-upload sent twice by reading them all first (journalctl -D DIR -f follows them unfolded)")
				}
				return o.showFolded(cmd.Context(), path, id, g.noPager)
			}
			argv := append([]string{"journalctl"}, o.journalctlArgs(id, g.noPager)...)
			if err := syscall.Exec(path, argv, os.Environ()); err != nil {
				return fmt.Errorf("run journalctl: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.within, "within", false, "the container and every container nested in it")
	f.Var(&o.uuid, "uuid", "the container whose instance UUID is `UUID`, on whichever host it ran")
	f.BoolVarP(&o.follow, "follow", "f", false, "show new entries as they arrive")
	f.StringVarP(&o.lines, "lines", "n", "", "show the last `N` entries")
	f.BoolVarP(&o.reverse, "reverse", "r", false, "newest entries first")
	f.StringVarP(&o.since, "since", "S", "", "entries from `TIME` on (as journalctl takes it)")
	f.StringVarP(&o.until, "until", "U", "", "entries up to `TIME`")
	f.StringVarP(&o.output, "output", "o", "", "journalctl output `FORMAT` (short, json, verbose, ...)")
	// events has its own --json: a bare one keeps meaning journalctl's
	// "-o json", one entry a line, as it did before --json took a value.
	f.Var(&o.json, "json", "journal entries as JSON: short (one a line, as a bare --json), pretty or off")
	f.Lookup("json").NoOptDefVal = string(jsonShort)
	o.source.addFlags(f)
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return commandWords("journalctl", "--output=help"), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

type eventsOptions struct {
	within, follow, reverse     bool
	lines, since, until, output string
	uuid                        containerUUID
	json                        jsonFormat
	source                      eventsSource
}

// journalctlArgs are the matches and options for journalctl. The match on
// contidd's own unit is always there: any process may log a field called
// AUDIT_CONTAINER_ID, only contidd's entries are trustworthy.
func (o eventsOptions) journalctlArgs(id contid.ID, noPager bool) []string {
	args := o.matches(id)
	if o.follow {
		args = append(args, "-f")
	}
	args = append(args, o.which()...)
	args = append(args, o.window()...)
	args = append(args, o.outputArgs(noPager)...)
	args = append(args, o.source.args()...)
	return args
}

// matches are the container's match and the trusted one.
func (o eventsOptions) matches(id contid.ID) []string {
	field := "AUDIT_CONTAINER_ID"
	if o.within {
		field = "AUDIT_CONTAINER_WITHIN"
	}
	match := field + "=" + strconv.FormatUint(uint64(id), 10)
	if o.uuid != "" {
		match = "AUDIT_CONTAINER_UUID=" + string(o.uuid)
	}
	return []string{match, "_SYSTEMD_UNIT=contidd.service"}
}

// which are the options that pick among the entries found and order
// them: applied after folding, so that -n 3 gives three distinct ones.
func (o eventsOptions) which() []string {
	var args []string
	if o.lines != "" {
		args = append(args, "-n", o.lines)
	}
	if o.reverse {
		args = append(args, "-r")
	}
	return args
}

func (o eventsOptions) window() []string {
	var args []string
	if o.since != "" {
		args = append(args, "--since="+o.since)
	}
	if o.until != "" {
		args = append(args, "--until="+o.until)
	}
	return args
}

// outputArgs say how journalctl prints what it found.
func (o eventsOptions) outputArgs(noPager bool) []string {
	var args []string
	output := o.output
	switch o.json {
	case jsonShort:
		output = "json"
	case jsonPretty:
		output = "json-pretty"
	}
	if output != "" {
		args = append(args, "-o", output)
	}
	if noPager {
		args = append(args, "--no-pager")
	}
	return args
}

// containerUUID is an instance UUID, 8-4-4-4-12 hexadecimal digits.
// contidd writes UUIDs in lower case and journal matches are exact, so it
// is stored so; a malformed one (a stray space, a brace) is refused
// rather than matching nothing.
type containerUUID string

func (u *containerUUID) String() string { return string(*u) }
func (u *containerUUID) Type() string   { return "UUID" }

func (u *containerUUID) Set(s string) error {
	l := strings.ToLower(s)
	ok := len(l) == 36
	for i := 0; ok && i < len(l); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			ok = l[i] == '-'
		} else {
			ok = l[i] >= '0' && l[i] <= '9' || l[i] >= 'a' && l[i] <= 'f'
		}
	}
	if !ok {
		return fmt.Errorf("%q is not a UUID: xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, as contidctl show prints it", s)
	}
	*u = containerUUID(l)
	return nil
}

// eventsContainer looks the argument up in contidd as resolve does, but
// takes a number contidd does not know (it may be unreachable, or have
// forgotten the container) as an ID: the journal keeps the events of
// containers contidd no longer records.
func eventsContainer(cmd *cobra.Command, g *globals, arg string) (contid.ID, error) {
	v, perr := strconv.ParseUint(arg, 10, 64)
	if perr == nil && (v == 0 || contid.ID(v) == contid.Invalid) {
		return 0, usageError("%q is not a container ID", arg)
	}
	c, err := connect(g)
	if err != nil {
		if perr == nil {
			return contid.ID(v), nil
		}
		return 0, err
	}
	defer c.Close()
	id, err := resolve(cmd.Context(), c, arg)
	if perr == nil && errors.Is(err, contid.ErrNoSuchContainer) {
		return contid.ID(v), nil
	}
	return id, err
}

// commandWords runs a program and returns the first word of each line of
// its output, for completions; nothing if it fails.
func commandWords(name string, args ...string) []cobra.Completion {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return nil
	}
	var words []cobra.Completion
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			words = append(words, f[0])
		}
	}
	return words
}

func completionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "Print a shell completion script",
		Args:      exactArgs(1),
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return usageError("no completion for %q: bash, zsh or fish", args[0])
		},
	}
}
