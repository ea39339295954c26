package daemon

import "io"

// Test access for the external test package.
var EnableAuditing = enableAuditing

func NewTestLogger(w io.Writer, max int) *Logger {
	l := &Logger{out: w}
	l.SetLevel(max)
	return l
}
