package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A private journald stamps the host's machine ID on its entries, or,
// given WithMachineID, that one: two of them on one kernel are two
// hosts to a collector. The host's /etc/machine-id stays as it was.
func TestJournaldMachineID(t *testing.T) {
	RequireRoot(t)
	hostFile, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		Missing(t, "skipped: /etc/machine-id: %v", err)
	}
	host := strings.TrimSpace(string(hostFile))
	other := NewMachineID()
	tests := []struct {
		name string
		opts []JournaldOption
		want string
	}{
		{"default", nil, host},
		{"given", []JournaldOption{WithMachineID(other)}, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := StartJournald(t, tt.opts...)
			if j.MachineID != tt.want {
				t.Errorf("MachineID %q, want %q", j.MachineID, tt.want)
			}
			marker := "CONTID_TEST_MACHINE=" + NewMachineID()
			c, err := net.Dial("unixgram", j.Socket)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Write([]byte("MESSAGE=machine id\n" + marker + "\n"))
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := j.Query(t, marker)
			if len(got) != 1 || got[0].Get("_MACHINE_ID") != tt.want {
				t.Fatalf("entries %v, want one with _MACHINE_ID=%s", got, tt.want)
			}
			if now, err := os.ReadFile("/etc/machine-id"); err != nil || string(now) != string(hostFile) {
				t.Fatalf("the host's /etc/machine-id reads %q (%v), was %q", now, err, hostFile)
			}
		})
	}
}

// holdJournaldEnv makes TestJournaldDiesWithTest's helper run: it starts
// journald ("tied", or "untied" for the control), prints its PID and
// waits to be killed.
const holdJournaldEnv = "CONTID_TESTENV_HOLD_JOURNALD"

func TestHoldJournaldHelper(t *testing.T) {
	mode := os.Getenv(holdJournaldEnv)
	if mode == "" {
		t.Skip("helper of TestJournaldDiesWithTest")
	}
	tieToTest = mode == "tied"
	j := StartJournald(t)
	fmt.Printf("journald %d\n", j.PID())
	time.Sleep(time.Minute)
}

// A test killed outright (SIGKILL, or a timeout's SIGQUIT) runs no
// cleanup: its journald must die with it all the same, or it holds the
// descriptors it inherited, the host lock among them. The control starts
// journald untied and sees it outlive the test.
func TestJournaldDiesWithTest(t *testing.T) {
	RequireRoot(t)
	requireJournald(t)
	for _, tc := range []struct {
		mode      string
		wantAlive bool
	}{{"tied", false}, {"untied", true}} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHoldJournaldHelper$")
			cmd.Env = append(os.Environ(), holdJournaldEnv+"="+tc.mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			var pid int
			sc := bufio.NewScanner(out)
			for pid == 0 && sc.Scan() {
				_, _ = fmt.Sscanf(sc.Text(), "journald %d", &pid)
			}
			if pid == 0 {
				t.Fatalf("the helper printed no journald PID")
			}
			// Ended by PID whatever happens below.
			defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			alive := true
			for end := time.Now().Add(3 * time.Second); alive && time.Now().Before(end); {
				alive = processRuns(pid)
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("journald %d after its test was SIGKILLed: running %v", pid, alive)
			if alive != tc.wantAlive {
				t.Errorf("journald running %v after its test was killed, want %v", alive, tc.wantAlive)
			}
		})
	}
}

// processRuns: pid exists and is not a zombie waiting for its new parent.
func processRuns(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
