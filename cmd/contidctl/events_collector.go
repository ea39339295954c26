package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// eventsSource says which journal events reads: the local one by
// default, or a directory of journal files, such as a collector's where
// systemd-journal-remote files each sending host's entries, narrowed to
// one host's by its machine ID. It adds to the trusted match on
// contidd's unit; it never replaces it (docs/DESIGN.md, "Collecting
// journals from many hosts", says what the match means there). A
// directory's entries are folded, each shown or counted once
// (events_fold.go).
type eventsSource struct {
	directory journalDirectory
	machine   machineID
}

func (s *eventsSource) addFlags(f *pflag.FlagSet) {
	f.Var(&s.directory, "directory", "read the journal files in `DIR` (as journalctl -D), e.g. a collector's, each entry once")
	f.Var(&s.machine, "machine", "only the entries of the host whose machine ID is `MACHINE_ID` (_MACHINE_ID=)")
	// Shells then complete directories only.
	_ = cobra.MarkFlagDirname(f, "directory")
}

// args are journalctl's: a match on _MACHINE_ID, which journald on the
// sending host stamps (a client cannot set it), and the directory.
func (s eventsSource) args() []string {
	var args []string
	if s.machine != "" {
		args = append(args, "_MACHINE_ID="+string(s.machine))
	}
	if s.directory != "" {
		args = append(args, "--directory="+string(s.directory))
	}
	return args
}

// journalDirectory is checked when it is given: journalctl -D on a
// missing directory says "No journal files were found", which reads as
// "no events" rather than "wrong path".
type journalDirectory string

func (d *journalDirectory) String() string { return string(*d) }
func (d *journalDirectory) Type() string   { return "DIR" }

func (d *journalDirectory) Set(s string) error {
	fi, err := os.Stat(s)
	if err != nil {
		return fmt.Errorf("journal directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("journal directory %s: not a directory", s)
	}
	*d = journalDirectory(s)
	return nil
}

// machineID is a machine-id(5): 32 hexadecimal digits. journald writes
// it in lower case and journal matches are exact, so it is stored so; a
// malformed one is refused rather than matching nothing.
type machineID string

func (m *machineID) String() string { return string(*m) }
func (m *machineID) Type() string   { return "MACHINE_ID" }

func (m *machineID) Set(s string) error {
	if len(s) != 32 || strings.Trim(strings.ToLower(s), "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a machine ID: 32 hexadecimal digits, as in /etc/machine-id", s)
	}
	*m = machineID(strings.ToLower(s))
	return nil
}
