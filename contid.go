// Package contid holds the value types shared by every layer of contid:
// audit container IDs, their nesting chains and per-container flags.
//
// It has no dependencies so that the kernel layer, the registry and the
// D-Bus layer can agree on these types without importing each other.
package contid

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ID is an audit container ID.
type ID uint64

const (
	// Unset asks contidd to allocate a fresh ID.
	Unset ID = 0
	// Invalid is never a valid ID (it is the kernel series' "unset" value).
	Invalid ID = math.MaxUint64
)

// MaxDepth is the deepest nesting the kernel programs can carry. The
// configured limit may be lower, never higher.
const MaxDepth = 8

// Flags are per-container options that the kernel programs act on.
type Flags uint32

const (
	// FlagAllowNesting lets processes of this container tag cgroups in
	// their own subtree; the new IDs become children of this one.
	FlagAllowNesting Flags = 1 << 0
	// FlagJoinIgnore is JoinPolicy=ignore: tasks attached to the cgroup
	// later are not tagged on join.
	FlagJoinIgnore Flags = 1 << 1
	// FlagAutotag marks an ID the kernel assigned at cgroup_mkdir.
	FlagAutotag Flags = 1 << 2
	// FlagAllowBPF lets the container's tasks load BPF programs in
	// enforcing mode although [Enforce] AllowBPF= is off (the AllowBPF
	// tag option).
	FlagAllowBPF Flags = 1 << 3
	// FlagAllowModules is the same for kernel modules and the module
	// requests of the kernel (the AllowModules tag option).
	FlagAllowModules Flags = 1 << 4

	// FlagsGrants are the flags that open an exception to enforcing
	// mode: a caller in a container may give a new one only those its
	// own container holds.
	FlagsGrants = FlagAllowBPF | FlagAllowModules
)

var flagNames = []struct {
	flag Flags
	name string
}{
	{FlagAllowNesting, "allow-nesting"},
	{FlagJoinIgnore, "join-ignore"},
	{FlagAutotag, "autotag"},
	{FlagAllowBPF, "allow-bpf"},
	{FlagAllowModules, "allow-modules"},
}

// Strings names the set flags, for the Container.Flags property.
func (f Flags) Strings() []string {
	names := []string{}
	for _, fn := range flagNames {
		if f&fn.flag != 0 {
			names = append(names, fn.name)
		}
	}
	return names
}

// Chain is an ID with its ancestors, innermost first: Chain{4, 2, 1} is
// container 4, nested in 2, nested in 1.
type Chain []ID

// String renders the chain as the kernel series did: "4,^2,^1".
func (c Chain) String() string {
	var b strings.Builder
	for i, id := range c {
		if i > 0 {
			b.WriteString(",^")
		}
		b.WriteString(strconv.FormatUint(uint64(id), 10))
	}
	return b.String()
}

// ErrBadChain is returned by ParseChain for malformed input.
var ErrBadChain = errors.New("malformed container ID chain")

// ParseChain parses the form that Chain.String writes.
func ParseChain(s string) (Chain, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadChain)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxDepth {
		return nil, fmt.Errorf("%w: deeper than %d", ErrBadChain, MaxDepth)
	}
	chain := make(Chain, 0, len(parts))
	for i, p := range parts {
		if i > 0 {
			if !strings.HasPrefix(p, "^") {
				return nil, fmt.Errorf("%w: ancestor %q lacks '^'", ErrBadChain, p)
			}
			p = p[1:]
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil || ID(v) == Unset || ID(v) == Invalid {
			return nil, fmt.Errorf("%w: bad ID %q", ErrBadChain, p)
		}
		chain = append(chain, ID(v))
	}
	return chain, nil
}

// ID is the innermost ID, or Unset for an empty chain.
func (c Chain) ID() ID {
	if len(c) == 0 {
		return Unset
	}
	return c[0]
}

// Parent is the ID this one is nested in, or Unset at the top level.
func (c Chain) Parent() ID {
	if len(c) < 2 {
		return Unset
	}
	return c[1]
}

// Within reports whether id is this container or one of its ancestors.
func (c Chain) Within(id ID) bool {
	for _, x := range c {
		if x == id {
			return true
		}
	}
	return false
}

// ErrIDTaken is returned when an ID was already claimed in this boot, by
// user space or by the kernel's autotag. It lives here so that the
// registry can recognise it without importing the kernel layer.
var ErrIDTaken = errors.New("audit container ID already claimed")

// Tag is what the kernel carries for a cgroup: the chain and the flags.
type Tag struct {
	Chain Chain
	Flags Flags
}

// ID is the innermost ID of the tag.
func (t Tag) ID() ID { return t.Chain.ID() }

// Mode says whether the kernel can make tags tamper-proof.
type Mode string

const (
	// ModeEnforcing: the BPF LSM programs are attached.
	ModeEnforcing Mode = "enforcing"
	// ModeTracking: inheritance and attribution only.
	ModeTracking Mode = "tracking"
)

// Attribution says how an audit event's process was matched to a
// container: the kernel layer decides it from its per-PID records, the
// audit reader carries it, the journal writes by it.
type Attribution int

const (
	// Unattributed: no tagged process with that PID was alive then.
	Unattributed Attribution = iota
	// LiveProcess: the process is running and carries the tag now.
	LiveProcess
	// ExitedProcess: the tag is from the record of a process that has
	// exited.
	ExitedProcess
	// AmbiguousPID: a PID reused around the event's time makes the owner
	// uncertain; never attribute. The event still goes to the journal,
	// marked, with its Candidates, so a container cannot make its calls
	// vanish by recycling PIDs.
	AmbiguousPID
)

// Candidates are the containers an event with an AmbiguousPID may have
// come from: the IDs of the recorded lives of its PID that cover the
// event's time, the older life first, from the first slot on. A PID has
// two lives on record, so there are at most two; an Unset slot is empty.
// One candidate means the other life was a process in no container; none
// means the lives that could have made the call are no longer on record.
type Candidates [2]ID

// Labels are what names a container in contid's logs, beside its ID:
// the journal writes each non-empty one as an AUDIT_CONTAINER_* field
// (docs/DESIGN.md). They live here because both the D-Bus layer, which
// records contid's own operations, and the journal layer, which writes
// them, must agree on them without importing each other.
type Labels struct {
	Name, Unit string
	// Manager, Image and ManagerID say what started the container.
	Manager, Image, ManagerID string
	// UUID is the container's instance UUID, unique across hosts where
	// the ID is unique on one host only.
	UUID string
}
