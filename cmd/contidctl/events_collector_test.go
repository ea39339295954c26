package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// --directory and --machine add to the trusted match, never replace it;
// a malformed machine ID or a directory that is not there is a usage
// error naming the problem, not a query that silently finds nothing.
func TestEventsSource(t *testing.T) {
	bin := t.TempDir()
	// The fake journalctl notes its arguments; asked for -o export (the
	// entries to fold) it prints no entries.
	argsFile := filepath.Join(bin, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" >>" + argsFile + "\ncase \" $* \" in *\" export \"*) ;; *) echo shown;; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "remote-host.journal")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const mid = "0123456789abcdef0123456789abcdef"
	trusted := "AUDIT_CONTAINER_ID=42\n_SYSTEMD_UNIT=contidd.service\n"
	// With --directory, events reads the entries to fold (-o export),
	// then shows the folded ones from a journal of its own, whatever
	// the options, with -n, -r and -o.
	folded := "-o\nexport\n--no-pager\n--directory=FOLDED\n"
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"directory", []string{"events", "42", "--directory=" + dir}, trusted + "--directory=" + dir + "\n" + folded, ""},
		{"machine", []string{"events", "--machine", mid, "42"}, trusted + "_MACHINE_ID=" + mid + "\n", ""},
		{"upper-case machine ID", []string{"events", "42", "--machine=" + strings.ToUpper(mid)}, trusted + "_MACHINE_ID=" + mid + "\n", ""},
		{"both, with options", []string{"events", "--within", "42", "--machine=" + mid, "--directory", dir, "-n", "3", "--json"},
			"AUDIT_CONTAINER_WITHIN=42\n_SYSTEMD_UNIT=contidd.service\n_MACHINE_ID=" + mid + "\n--directory=" + dir + "\n" + folded + "-n\n3\n-o\njson\n", ""},
		{"without --directory, as given", []string{"events", "--within", "42", "--machine=" + mid, "-n", "3", "-r", "-S", "-1h", "--json"},
			"AUDIT_CONTAINER_WITHIN=42\n_SYSTEMD_UNIT=contidd.service\n-n\n3\n-r\n--since=-1h\n-o\njson\n_MACHINE_ID=" + mid + "\n", ""},
		{"short machine ID", []string{"events", "42", "--machine=" + mid[:31]}, "", "is not a machine ID"},
		{"long machine ID", []string{"events", "42", "--machine=" + mid + "0"}, "", "is not a machine ID"},
		{"non-hex machine ID", []string{"events", "42", "--machine=" + mid[:31] + "g"}, "", "is not a machine ID"},
		{"machine ID as a UUID", []string{"events", "42", "--machine=01234567-89ab-cdef-0123-456789abcdef"}, "", "is not a machine ID"},
		{"missing directory", []string{"events", "42", "--directory=" + filepath.Join(dir, "nope")}, "", "no such file or directory"},
		{"a file, not a directory", []string{"events", "42", "--directory=" + file}, "", "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(argsFile)
			out, errOut, code := runBinary(t, []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, tt.args...)
			if tt.wantErr != "" {
				if code != 2 || out != "" || !strings.Contains(errOut, tt.wantErr) {
					t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and an error saying %q", code, out, errOut, tt.wantErr)
				}
				return
			}
			ran, _ := os.ReadFile(argsFile)
			got := foldedDir.ReplaceAllString(string(ran), "--directory=FOLDED")
			if code != 0 || out != "shown\n" || got != tt.want {
				t.Fatalf("events ran journalctl with\n%s(exit %d, stdout %q, %s)\nwant\n%s", got, code, out, errOut, tt.want)
			}
		})
	}
}

var foldedDir = regexp.MustCompile(`--directory=\S*/contidctl-events-\d+`)
