package contid

import "errors"

// Sentinels every layer shares: the registry returns them (wrapped with a
// message that says which container, cgroup or limit was involved), the
// D-Bus layer maps each one to its error name, and its client maps the
// name back, so a Go caller uses errors.Is the same way in-process and
// over the bus. They live here, with no dependencies, so that the client
// need not link the kernel layer.
var (
	// ErrAlreadyTagged maps to org.contid1.AlreadyTagged.
	ErrAlreadyTagged = errors.New("already tagged")
	// ErrNotDescendant maps to org.contid1.NotDescendant.
	ErrNotDescendant = errors.New("target is not a descendant of the caller")
	// ErrIDInUse maps to org.contid1.IdInUse.
	ErrIDInUse = errors.New("audit container ID in use")
	// ErrUUIDInUse maps to org.contid1.UUIDInUse: an instance UUID asked
	// for is held by another active container.
	ErrUUIDInUse = errors.New("container UUID in use")
	// ErrNoSuchContainer maps to org.contid1.NoSuchContainer.
	ErrNoSuchContainer = errors.New("no such container")
	// ErrNotFresh maps to org.contid1.NotFresh.
	ErrNotFresh = errors.New("process is not fresh")
	// ErrLimitExceeded maps to org.contid1.LimitExceeded.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrInvalidArgs maps to org.freedesktop.DBus.Error.InvalidArgs.
	ErrInvalidArgs = errors.New("invalid argument")
	// ErrAccessDenied maps to org.freedesktop.DBus.Error.AccessDenied.
	ErrAccessDenied = errors.New("access denied")
)
