package registry

import "errors"

// Sentinels the D-Bus layer maps one to one onto error names. Every error
// the registry returns wraps one of them (or a kernel/storage error) with a
// message that says which container, cgroup or limit was involved.
var (
	// ErrAlreadyTagged maps to org.contid1.AlreadyTagged.
	ErrAlreadyTagged = errors.New("already tagged")
	// ErrNotDescendant maps to org.contid1.NotDescendant.
	ErrNotDescendant = errors.New("target is not a descendant of the caller")
	// ErrIDInUse maps to org.contid1.IdInUse.
	ErrIDInUse = errors.New("audit container ID in use")
	// ErrNoSuchContainer maps to org.contid1.NoSuchContainer.
	ErrNoSuchContainer = errors.New("no such container")
	// ErrNotFresh maps to org.contid1.NotFresh. The D-Bus layer checks
	// threads and children; it lives here so all sentinels live together.
	ErrNotFresh = errors.New("process is not fresh")
	// ErrLimitExceeded maps to org.contid1.LimitExceeded.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrInvalidArgs maps to org.freedesktop.DBus.Error.InvalidArgs.
	ErrInvalidArgs = errors.New("invalid argument")
	// ErrAccessDenied maps to org.freedesktop.DBus.Error.AccessDenied.
	ErrAccessDenied = errors.New("access denied")
	// ErrClosed is returned by changes attempted after Close.
	ErrClosed = errors.New("registry closed")
)
