package dbus_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/testenv"
)

// Every contidctl command takes its options before or after its
// arguments, as systemctl does: each row runs twice, once as
// `contidctl CMD OPTIONS ARGS` and once as `contidctl CMD ARGS OPTIONS`,
// and both must give the same exit code and output.
func TestContidctlOptionsAnywhere(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	bus := "--address=" + e.busAddr
	web := e.cgroup("web")
	p := e.startIn(web, nil, "sleep", "1000")
	out, errOut, code := ctl(t, nil, nil, "tag-cgroup", web, "--name=web", bus)
	if code != 0 {
		t.Fatalf("tag-cgroup with options after the path: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	pid := fmt.Sprint(p.Process.Pid)
	// An exited container: its cgroup is tagged, then removed.
	gone := e.cgroup("gone")
	if _, errOut, code := ctl(t, nil, nil, bus, "tag-cgroup", "--name=gone", gone); code != 0 {
		t.Fatalf("tag-cgroup gone: %s", errOut)
	}
	if err := os.Remove(filepath.Join(e.cgRoot, gone)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		out, _, _ := ctl(t, nil, nil, bus, "show", "gone", "-p", "State", "--value")
		return strings.TrimSpace(out) == "exited"
	})

	n := 0
	fresh := func() string { n++; return e.cgroup(fmt.Sprintf("fresh%d", n)) }
	freshPID := func() string { return fmt.Sprint(e.startIn(fresh(), nil, "sleep", "1000").Process.Pid) }
	fakeJournal := t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(fakeJournal, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	pathEnv := []string{"PATH=" + fakeJournal + ":" + os.Getenv("PATH")}

	tests := []struct {
		name    string
		cmd     string
		opts    []string
		args    func() []string
		code    int
		want    []string // in stdout, each
		notWant string   // not in stdout
	}{
		{"list", "list", []string{bus}, nil, 0, []string{"ID NAME STATE", " web ", "1 containers listed."}, " gone "},
		{"list --all", "list", []string{bus, "--all"}, nil, 0, []string{" gone ", "exited", "2 containers listed."}, ""},
		{"list --no-legend", "list", []string{bus, "--no-legend"}, nil, 0, []string{id + " web active"}, "listed"},
		{"list --json=short", "list", []string{bus, "--json=short"}, nil, 0, []string{`[{"id":` + id + `,"name":"web","state":"active"`}, "\n  "},
		{"status", "status", []string{bus}, nil, 0, []string{"Enforcement: tracking"}, ""},
		{"status NAME --json", "status", []string{bus, "--json"}, func() []string { return []string{"web"} }, 0, []string{`"processes": [`, pid, `"chain": [`}, ""},
		{"show -p --value", "show", []string{bus, "-p", "ControlGroup,State", "--value"}, func() []string { return []string{id} }, 0, []string{"active\n" + web + "\n"}, "="},
		{"show --property", "show", []string{bus, "--property=Chain", "--property", "Name"}, func() []string { return []string{"web"} }, 0, []string{"Name=web\nChain=" + id + "\n"}, "State"},
		{"show --json", "show", []string{bus, "--json=pretty"}, func() []string { return []string{id} }, 0, []string{`"control_group": "` + web + `"`, `"parent_id": 0`}, ""},
		{"who", "who", []string{bus, "--json=short"}, func() []string { return []string{pid} }, 0, []string{`{"pid":` + pid + `,"id":` + id + `,`}, ""},
		{"tag-cgroup", "tag-cgroup", []string{bus, "--name=db", "--join-policy", "tag", "--allow-nesting"}, func() []string { return []string{fresh()} }, 0, []string{"\n"}, ""},
		{"tag-cgroup --json", "tag-cgroup", []string{bus, "--json", "--id", "0"}, func() []string { return []string{fresh()} }, 0, []string{`"object": "/org/contid1/container/`}, ""},
		{"tag-pid", "tag-pid", []string{bus, "--name", "pid1"}, func() []string { return []string{freshPID()} }, 0, []string{"\n"}, ""},
		{"tag-unit absent", "tag-unit", []string{bus, "--name=u"}, func() []string { return []string{"contid-test-absent.service"} }, 4, nil, ""},
		{"tag-machine absent", "tag-machine", []string{bus, "--name=m"}, func() []string { return []string{"contid-test-absent"} }, 4, nil, ""},
		{"events", "events", []string{"-n", "3", "--json=pretty", "--no-pager"}, func() []string { return []string{id} }, 0, []string{"AUDIT_CONTAINER_ID=" + id + "\n_SYSTEMD_UNIT=contidd.service\n-n\n3\n-o\njson-pretty\n--no-pager\n"}, ""},
		{"events NAME --within", "events", []string{bus, "--within", "-r"}, func() []string { return []string{"web"} }, 0, []string{"AUDIT_CONTAINER_WITHIN=" + id + "\n_SYSTEMD_UNIT=contidd.service\n-r\n"}, ""},
		{"events unknown NAME", "events", []string{bus, "-f"}, func() []string { return []string{"nosuchname"} }, 4, nil, ""},
		{"tree NAME", "tree", []string{bus, "--all", "--no-legend"}, func() []string { return []string{"web"} }, 0, []string{id + " web "}, "listed"},
		{"completion", "completion", []string{"--no-pager"}, func() []string { return []string{"fish"} }, 0, []string{"complete -c contidctl"}, ""},
		{"help", "show", []string{"--help"}, func() []string { return []string{id} }, 0, []string{"--property", "--address"}, ""},
	}
	for _, tt := range tests {
		for _, order := range []string{"options first", "arguments first"} {
			t.Run(tt.name+"/"+order, func(t *testing.T) {
				var args []string
				if tt.args != nil {
					args = tt.args()
				}
				argv := append(append([]string{tt.cmd}, tt.opts...), args...)
				if order == "arguments first" {
					argv = append(append([]string{tt.cmd}, args...), tt.opts...)
				}
				out, errOut, code := ctl(t, nil, pathEnv, argv...)
				if code != tt.code {
					t.Fatalf("contidctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(argv, " "), code, tt.code, out, errOut)
				}
				for _, w := range tt.want {
					if !squeezed(out, w) {
						t.Errorf("contidctl %s: stdout lacks %q:\n%s", strings.Join(argv, " "), w, out)
					}
				}
				if tt.notWant != "" && strings.Contains(out, tt.notWant) {
					t.Errorf("contidctl %s: stdout has %q:\n%s", strings.Join(argv, " "), tt.notWant, out)
				}
			})
		}
	}

	// list --json and show --json describe a container with the same
	// object.
	t.Run("one JSON shape", func(t *testing.T) {
		listOut, _, _ := ctl(t, nil, nil, bus, "list", "--json")
		showOut, _, _ := ctl(t, nil, nil, bus, "show", id, "--json")
		var list []map[string]any
		var show map[string]any
		if err := json.Unmarshal([]byte(listOut), &list); err != nil {
			t.Fatalf("list --json: %v\n%s", err, listOut)
		}
		if err := json.Unmarshal([]byte(showOut), &show); err != nil {
			t.Fatalf("show --json: %v\n%s", err, showOut)
		}
		for _, obj := range list {
			if fmt.Sprint(obj["id"]) != id {
				continue
			}
			a, _ := json.Marshal(obj)
			b, _ := json.Marshal(show)
			if string(a) != string(b) {
				t.Fatalf("list and show differ:\nlist: %s\nshow: %s", a, b)
			}
			return
		}
		t.Fatalf("container %s not in list --json: %s", id, listOut)
	})

	// The shells' completion asks contidctl itself (cobra's __complete)
	// for the running containers' names and IDs.
	t.Run("completion of container names", func(t *testing.T) {
		out, errOut, code := ctl(t, nil, nil, "__complete", bus, "status", "")
		if code != 0 || !strings.Contains(out, "web\tcontainer "+id) || !strings.Contains(out, id+"\t"+web) || strings.Contains(out, "gone") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})

	// Each shell completes a running container's name from what its
	// completion script asks contidctl (the script the package installs).
	t.Run("shell completion", func(t *testing.T) {
		testenv.RequireCommand(t, "bash", "zsh", "fish", "tmux")
		const bashCompletion = "/usr/share/bash-completion/bash_completion"
		if _, err := os.Stat(bashCompletion); err != nil {
			testenv.Missing(t, "skipped: bash-completion is not installed (`make deps` installs it)")
		}
		ctlDir := filepath.Dir(binPath)
		dir := t.TempDir()
		for shell, file := range map[string]string{"bash": "contidctl.bash", "zsh": "_contidctl", "fish": "contidctl.fish"} {
			out, errOut, code := ctl(t, nil, nil, "completion", shell)
			if code != 0 {
				t.Fatalf("completion %s: %s", shell, errOut)
			}
			if err := os.WriteFile(filepath.Join(dir, file), []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		env := append(os.Environ(), "PATH="+ctlDir+":"+os.Getenv("PATH"), "DBUS_SYSTEM_BUS_ADDRESS="+e.busAddr, "HOME="+dir, "TERM=xterm")
		run := func(name string, args ...string) string {
			cmd := exec.Command(name, args...)
			cmd.Env = env
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, out)
			}
			return string(out)
		}
		t.Run("bash", func(t *testing.T) {
			script := fmt.Sprintf(`source %s; source %s
COMP_WORDS=(contidctl status we); COMP_CWORD=2; COMP_LINE="contidctl status we"; COMP_POINT=${#COMP_LINE}
__start_contidctl contidctl we status 2>/dev/null; printf '%%s\n' "${COMPREPLY[@]}"`, bashCompletion, filepath.Join(dir, "contidctl.bash"))
			if out := run("bash", "--norc", "-c", script); strings.TrimSpace(out) != "web" {
				t.Fatalf("bash completed %q, want web", out)
			}
		})
		t.Run("fish", func(t *testing.T) {
			out := run("fish", "--no-config", "-c", "source "+filepath.Join(dir, "contidctl.fish")+"; complete -C 'contidctl status we'")
			if !strings.HasPrefix(out, "web\tcontainer "+id) {
				t.Fatalf("fish completed %q, want web", out)
			}
		})
		// zsh completes only in its line editor: type into an
		// interactive zsh in tmux and read the screen.
		t.Run("zsh", func(t *testing.T) {
			session := fmt.Sprintf("contid-ctltest-%d", os.Getpid())
			tmux := func(args ...string) string { return run("tmux", append([]string{"-L", session}, args...)...) }
			tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "20", "zsh", "-f")
			defer exec.Command("tmux", "-L", session, "kill-server").Run()
			screen := func() string { return tmux("capture-pane", "-p", "-t", session) }
			tmux("send-keys", "-t", session, "fpath=("+dir+" $fpath); autoload -U compinit; compinit -u; PS1='ready> '", "Enter")
			waitFor(t, 30*time.Second, func() bool { return strings.Contains(screen(), "ready> ") })
			tmux("send-keys", "-t", session, "contidctl status we")
			waitFor(t, 5*time.Second, func() bool { return strings.Contains(screen(), "ready> contidctl status we") })
			tmux("send-keys", "-t", session, "Tab")
			waitFor(t, 30*time.Second, func() bool { return strings.Contains(screen(), "ready> contidctl status web") })
		})
	})

	// On a terminal the output goes through $SYSTEMD_PAGER; --no-pager
	// and a pipe (every other run here) write it directly.
	t.Run("pager", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			args  []string
			paged bool
		}{
			{"terminal", []string{bus, "list"}, true},
			{"--no-pager", []string{"list", bus, "--no-pager"}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				paged := filepath.Join(t.TempDir(), "paged")
				screen := runOnTerminal(t, []string{"SYSTEMD_PAGER=cat > " + paged, "LESS="}, tc.args...)
				b, err := os.ReadFile(paged)
				switch {
				case tc.paged && (err != nil || !strings.Contains(string(b), "containers listed.")):
					t.Fatalf("the pager got %q (%v); the terminal %q", b, err, screen)
				case tc.paged && strings.Contains(screen, "containers listed."):
					t.Fatalf("the output went to the terminal too: %q", screen)
				case !tc.paged && (err == nil || !strings.Contains(screen, "containers listed.")):
					t.Fatalf("the pager ran (%q); the terminal got %q", b, screen)
				}
			})
		}
	})
}

// squeezed reports whether want is in out once runs of spaces are one
// space in both (tabwriter pads the columns).
func squeezed(out, want string) bool {
	spaces := regexp.MustCompile(` +`)
	return strings.Contains(spaces.ReplaceAllString(out, " "), spaces.ReplaceAllString(want, " "))
}

// ctlCommand is the built contidctl with env added to ours.
func ctlCommand(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(filepath.Dir(binPath), "contidctl"), args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("condition not met within %v", timeout)
}

// runOnTerminal runs contidctl with its stdout on a fresh pseudo-terminal
// and returns what reached the terminal.
func runOnTerminal(t *testing.T, env []string, args ...string) string {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	screen := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		screen <- b.String()
	}()
	cmd := ctlCommand(env, args...)
	cmd.Stdout = tty
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	tty.Close()
	if err != nil {
		t.Fatalf("contidctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	select {
	case s := <-screen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal did not close")
		return ""
	}
}
