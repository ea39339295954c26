package testenv

import (
	"net"
	"os"
	"strings"
	"testing"
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
