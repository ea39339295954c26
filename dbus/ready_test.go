package dbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
)

// When contidd says READY=1 its audit reader has already joined the
// kernel's stream: a container started the moment contidd is ready (what
// systemd orders after it) has its first calls read. Before, READY came
// while the reader was still opening, and an exec straight after it was
// not seen at all.
func TestAuditReaderJoinedAtReady(t *testing.T) {
	for _, tt := range []struct {
		name, config, stream string
	}{
		{"multicast", "[Audit]\nSocket=multicast\n", "multicast"},
		{"multicast again", "[Audit]\nSocket=multicast\n", "multicast"},
		{"multicast a third time", "[Audit]\nSocket=multicast\n", "multicast"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.config)
			j := testenv.StartJournald(t)
			d := e.start("--journal-socket", j.Socket)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			mi, err := e.p2pClient().Manager(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if mi.AuditStream != tt.stream {
				t.Fatalf("AuditStream %q at READY=1, want %q\n%s", mi.AuditStream, tt.stream, d.logText())
			}
		})
	}
}
