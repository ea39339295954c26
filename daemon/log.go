package daemon

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coreos/go-systemd/v22/journal"

	cjournal "github.com/contid/contid/journal"
)

// Logger writes to the journal with priorities when journald runs, else
// to stderr with the "<N>" prefixes systemd and journald understand.
type Logger struct {
	max     atomic.Int32
	journal bool
	mu      sync.Mutex
	out     io.Writer
}

// NewLogger logs messages at priority max and more severe.
func NewLogger(max int) *Logger {
	l := &Logger{journal: journal.Enabled(), out: os.Stderr}
	l.SetLevel(max)
	return l
}

// SetLevel changes the least severe priority logged, as a reload of
// LogLevel= does.
func (l *Logger) SetLevel(max int) { l.max.Store(int32(max)) }

// Logf is a dbus.Logf.
func (l *Logger) Logf(priority int, format string, args ...any) {
	if priority > int(l.max.Load()) {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	if l.journal {
		err := journal.Send(msg, journal.Priority(priority), map[string]string{"SYSLOG_IDENTIFIER": "contidd", "SYSLOG_FACILITY": strconv.Itoa(cjournal.FacilityDaemon)})
		if err == nil {
			return
		}
	}
	l.mu.Lock()
	fmt.Fprintf(l.out, "<%d>%s\n", priority, msg)
	l.mu.Unlock()
}
