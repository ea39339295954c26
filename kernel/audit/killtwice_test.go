package audit_test

import (
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// TestUnicastKilledTwice: while a tagged container runs 2,500 execs and
// journald lags, a reader is SIGKILLed, its successor is SIGKILLed in
// the middle of replaying what the first left in the spool, and a third
// reads on from the kept socket and spool. Every exec is written, none
// is counted lost, and at most one event per kill is written twice.
func TestUnicastKilledTwice(t *testing.T) {
	for _, tc := range []struct {
		name        string
		secondAlive time.Duration
	}{
		{"killed-mid-replay", 300 * time.Millisecond},
		{"killed-at-once", 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, cg, reg, j := execScene(t, "killed2")
			stored := keptUnicastSocket(t, audit.Config{Source: audit.Unicast})
			defer stored.Close()
			spool, err := audit.NewSpool(0)
			if err != nil {
				t.Fatal(err)
			}
			defer spool.Close()
			start := func() *exec.Cmd {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), killedReaderEnv+"="+j.Socket+",20ms,spool")
				cmd.ExtraFiles = []*os.File{stored, spool.File()}
				cmd.Stderr = os.Stderr
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				line := make([]byte, 6)
				if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
					cmd.Process.Kill()
					t.Fatalf("killed reader did not start: %q %v", line, err)
				}
				return cmd
			}
			kill := func(cmd *exec.Cmd) {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
			}
			one := start()
			marker := "k" + randomSuffix(t)
			wait := startHelper(t, cg.fd, 2500, 500, "/bin/true", marker)
			time.Sleep(2 * time.Second)
			kill(one)
			held := spool.Unwritten()
			two := start()
			time.Sleep(tc.secondAlive)
			kill(two)
			heldAfter := spool.Unwritten()

			kept, err := audit.OpenSpool(spool.File())
			if err != nil {
				t.Fatal(err)
			}
			defer kept.Close()
			p := startPipelineOn(t, j, b, reg, audit.Config{Source: audit.Unicast, Inherited: stored, Spool: kept},
				journal.Config{Queue: 1024, Done: kept.Done, Unreported: kept})
			res := wait()
			p.waitIdle(t, 2*time.Second, 60*time.Second)
			p.stop()
			rs, fs := p.reader.Stats(), p.fwd.Stats()
			ids := map[string]int{}
			for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID"}, "AUDIT_FIELD_A1="+marker) {
				ids[e.Get("AUDIT_EVENT_ID")]++
			}
			dups := 0
			for _, n := range ids {
				dups += n - 1
			}
			losses := len(j.Query(t, "MESSAGE_ID="+journal.MessageEventsLost))
			t.Logf("%s: %d execs; %d records held at the first kill, %d at the second; %d distinct written (%d twice); the third replayed %d, counted %d lost; %d loss entries",
				tc.name, res.offered, held, heldAfter, len(ids), dups, rs.Replayed, fs.Lost, losses)
			if len(ids) != res.offered {
				t.Errorf("%d of %d execs written", len(ids), res.offered)
			}
			if fs.Lost != 0 || losses != 0 {
				t.Errorf("%d counted lost, %d loss entries; none was lost", fs.Lost, losses)
			}
			if dups > 2 {
				t.Errorf("%d events written twice", dups)
			}
			if held == 0 {
				t.Errorf("nothing held at the first kill: the check proves nothing")
			}
		})
	}
}
