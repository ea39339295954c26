package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/contid/contid"
)

// eventsCommand runs journalctl for the container. The match on contidd's
// own unit is always there: any process may log a field called
// AUDIT_CONTAINER_ID, only contidd's entries are trustworthy.
func eventsCommand(g *globals) *cobra.Command {
	var follow bool
	var lines, output string
	// events has its own --json: a bare one keeps meaning journalctl's
	// "-o json", one entry a line, as it did before --json took a value.
	var format jsonFormat
	cmd := &cobra.Command{
		Use:               "events ID",
		Short:             "Show the container's audit events from the journal",
		Args:              exactArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if v, err := strconv.ParseUint(id, 10, 64); err != nil || v == 0 || contid.ID(v) == contid.Invalid {
				return usageError("%q is not a container ID", id)
			}
			jargs := []string{"AUDIT_CONTAINER_ID=" + id, "_SYSTEMD_UNIT=contidd.service"}
			if follow {
				jargs = append(jargs, "-f")
			}
			if lines != "" {
				jargs = append(jargs, "-n", lines)
			}
			switch format {
			case jsonShort:
				output = "json"
			case jsonPretty:
				output = "json-pretty"
			}
			if output != "" {
				jargs = append(jargs, "-o", output)
			}
			if g.noPager {
				jargs = append(jargs, "--no-pager")
			}
			path, err := exec.LookPath("journalctl")
			if err != nil {
				return fmt.Errorf("journalctl is not installed")
			}
			if err := syscall.Exec(path, append([]string{"journalctl"}, jargs...), os.Environ()); err != nil {
				return fmt.Errorf("run journalctl: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "show new entries as they arrive")
	f.StringVarP(&lines, "lines", "n", "", "show the last `N` entries")
	f.StringVarP(&output, "output", "o", "", "journalctl output `FORMAT` (short, json, verbose, ...)")
	f.Var(&format, "json", "journal entries as JSON: short (one a line, as a bare --json), pretty or off")
	f.Lookup("json").NoOptDefVal = string(jsonShort)
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return commandWords("journalctl", "--output=help"), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
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
