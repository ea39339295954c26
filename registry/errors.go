package registry

import "errors"

// ErrClosed is returned by changes attempted after Close. The sentinels
// callers map to D-Bus error names are the root package's (contid.Err*).
var ErrClosed = errors.New("registry closed")
