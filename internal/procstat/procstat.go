// Package procstat reads what /proc/PID says about a process that the
// rest of contid relies on: its start time, which names it across PID
// reuse, and what tells one exec of it from the next.
package procstat

import (
	"bytes"
	"errors"
	"os"
	"strconv"
)

// errMalformedStat: a /proc/PID/stat line without the fields it must have.
var errMalformedStat = errors.New("malformed /proc/PID/stat")

// StartTicks is field 22 of /proc/PID/stat, the start time in clock
// ticks since boot: with the PID it names one process for good, across
// PID reuse. The guards compare it with the kernel's start_boottime.
func StartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statStartTicks(b)
}

func statStartTicks(b []byte) (uint64, error) {
	// comm (field 2) may contain spaces and parentheses: split after the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errMalformedStat
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, errMalformedStat
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}
