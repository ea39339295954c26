package daemon

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// statStartTime is field 22 of a /proc/<pid>/stat line.
func statStartTime(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
