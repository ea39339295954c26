package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"github.com/elastic/go-libaudit/v2/rule"
	"github.com/elastic/go-libaudit/v2/rule/flags"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procstat"
)

// Record types contid writes as user messages (docs/DESIGN.md).
const (
	TypeVirtMachineID = auparse.AUDIT_VIRT_MACHINE_ID // tag set or denied
	TypeVirtCreate    = auparse.AUDIT_VIRT_CREATE     // a new container
	TypeVirtDestroy   = auparse.AUDIT_VIRT_DESTROY    // a container exited
)

// ErrRuleExists: the kernel already holds an identical rule.
var ErrRuleExists = errors.New("audit rule already loaded")

// Control is a unicast audit netlink socket for requests: user records,
// status, rules. It is safe for concurrent use.
type Control struct {
	mu     sync.Mutex
	conn   *conn
	client *libaudit.AuditClient
}

// NewControl opens the control socket.
func NewControl() (*Control, error) {
	c, err := dial(0)
	if err != nil {
		return nil, err
	}
	return &Control{conn: c, client: &libaudit.AuditClient{Netlink: c}}, nil
}

// Close releases the socket.
func (c *Control) Close() error { return c.conn.Close() }

// Status is AUDIT_GET.
func (c *Control) Status() (*libaudit.AuditStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.client.GetStatus()
	if err != nil {
		return nil, fmt.Errorf("audit status: %w", err)
	}
	return st, nil
}

// SetStatus is AUDIT_SET for the fields named by st.Mask (enabled,
// backlog limit, backlog wait time, lost reset, ...).
func (c *Control) SetStatus(st libaudit.AuditStatus) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var data bytes.Buffer
	if err := binary.Write(&data, binary.NativeEndian, st); err != nil {
		return err
	}
	err := c.request(libaudit.AuditSet, data.Bytes())
	var errno syscall.Errno
	if st.Mask == libaudit.AuditStatusLost && errors.As(err, &errno) && int32(errno) < 0 {
		// Resetting the lost counter "fails" with the old count: the
		// kernel returns it where an errno would go.
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit set (mask %#x): %w", st.Mask, err)
	}
	return nil
}

// Enable switches kernel auditing on if it is off, and reports whether it
// already was. Debian 12's journald switches auditing off when it starts
// (its Audit= setting), so contidd, which needs the records, turns it back
// on. A locked configuration is already enabled, which is all we need.
func (c *Control) Enable() (wasEnabled bool, err error) {
	st, err := c.Status()
	if err != nil {
		return false, err
	}
	if st.Enabled != 0 {
		// 1, or 2: locked (immutable until reboot) and on.
		return true, nil
	}
	if err := c.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusEnabled, Enabled: 1}); err != nil {
		return false, fmt.Errorf("enable auditing: %w", err)
	}
	return false, nil
}

// RaiseBacklogLimit raises the kernel's audit backlog limit to limit if
// it is lower, and returns the limit it found. It never lowers the limit:
// with an audit daemon running, the backlog is that daemon's to size, and
// contidd only makes sure bursts queue rather than drop below its own
// floor.
func (c *Control) RaiseBacklogLimit(limit uint32) (was uint32, err error) {
	st, err := c.Status()
	if err != nil {
		return 0, err
	}
	if st.BacklogLimit >= limit {
		return st.BacklogLimit, nil
	}
	if err := c.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusBacklogLimit, BacklogLimit: limit}); err != nil {
		return st.BacklogLimit, fmt.Errorf("raise the audit backlog limit to %d: %w", limit, err)
	}
	return st.BacklogLimit, nil
}

// WriteUser logs text as a user record of the given type. The kernel
// prefixes the caller's pid, uid, auid, session and label and wraps the
// text in msg='...'. With auditing disabled the kernel accepts the
// request and discards the record, which is not an error here: the
// journal copy still exists.
func (c *Control) WriteUser(typ auparse.AuditMessageType, text string) error {
	if typ < unix.AUDIT_FIRST_USER_MSG || typ > unix.AUDIT_LAST_USER_MSG2 {
		return fmt.Errorf("audit user record: type %d is not a user message type", typ)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.request(uint16(typ), append([]byte(text), 0)); err != nil {
		return fmt.Errorf("audit user record %s: %w", typ, err)
	}
	return nil
}

// request sends one message with NLM_F_ACK and waits for the kernel's
// answer to that sequence number, skipping anything else.
func (c *Control) request(typ uint16, data []byte) error {
	seq, err := c.conn.Send(syscall.NetlinkMessage{
		Header: syscall.NlMsghdr{Type: typ, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK},
		Data:   data,
	})
	if err != nil {
		return err
	}
	for tries := 0; tries < 64; tries++ {
		msgs, err := c.conn.Receive(false, syscall.ParseNetlinkMessage)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			if m.Header.Type != unix.NLMSG_ERROR {
				return fmt.Errorf("unexpected reply type %d", m.Header.Type)
			}
			return libaudit.ParseNetlinkError(m.Data)
		}
	}
	return errors.New("no acknowledgement from the kernel")
}

// RuleLine is one line of a rules file: a rule contidd can add (Wire),
// or one it will not, with the reason (Err).
type RuleLine struct {
	Number int
	Text   string
	Wire   rule.WireFormat
	Err    error
}

// RulesFile is a parsed rules file in auditctl syntax, the form
// /etc/audit/rules.d uses.
type RulesFile struct {
	Rules   []RuleLine
	Refused []RuleLine
}

// ErrNotARule: a rules line that configures auditing (-D, -b, -e, -f,
// ...) rather than adding a rule. contidd adds rules; it does not delete
// the kernel's or reconfigure auditing from a rules file.
var ErrNotARule = errors.New("not a rule that can be added")

// errPrepend refuses -A, which contidd cannot load as written.
var errPrepend = errors.New("-A (insert first) is not supported: the rule would be appended; write it with -a")

// ParseRules parses every line with go-libaudit's auditctl flag parser,
// so syscall rules (-a, -A) and file watches (-w) alike are built; each
// line it cannot parse or build is kept in Refused with the reason,
// never dropped unseen. The error is for a file that cannot be read.
func ParseRules(r io.Reader) (RulesFile, error) {
	var f RulesFile
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rl := RuleLine{Number: n, Text: line}
		parsed, err := flags.Parse(line)
		switch {
		case err != nil:
			rl.Err = err
		case parsed.TypeOf() == rule.DeleteAllRuleType:
			rl.Err = ErrNotARule
		case parsed.TypeOf() == rule.PrependSyscallRuleType:
			// go-libaudit builds it without the prepend flag: the rule
			// would land at the end of its list, not before the others.
			rl.Err = errPrepend
		default:
			rl.Wire, rl.Err = rule.Build(parsed)
		}
		if rl.Err != nil {
			f.Refused = append(f.Refused, rl)
			continue
		}
		f.Rules = append(f.Rules, rl)
	}
	if err := sc.Err(); err != nil {
		return RulesFile{}, err
	}
	return f, nil
}

// LoadRules adds every rule of the file to the kernel. A rule the kernel
// already holds (EEXIST) is left alone, so loading twice is harmless. It
// returns the rules it added, so a caller (a test) can remove exactly
// those again, and the lines it did not load: those ParseRules refused,
// and those the kernel refused, each with the reason.
func (c *Control) LoadRules(path string) (added []rule.WireFormat, refused []RuleLine, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("audit rules: %w", err)
	}
	defer fh.Close()
	f, err := ParseRules(fh)
	if err != nil {
		return nil, nil, fmt.Errorf("audit rules %s: %w", path, err)
	}
	refused = f.Refused
	for _, rl := range f.Rules {
		if err := c.AddRule(rl.Wire); err != nil {
			if errors.Is(err, ErrRuleExists) {
				continue
			}
			rl.Err = err
			refused = append(refused, rl)
			continue
		}
		added = append(added, rl.Wire)
	}
	return added, refused, nil
}

// Rules lists the rules the kernel holds, in wire format.
func (c *Control) Rules() ([]rule.WireFormat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	raw, err := c.client.GetRules()
	if err != nil {
		return nil, fmt.Errorf("list audit rules: %w", err)
	}
	rules := make([]rule.WireFormat, len(raw))
	for i, r := range raw {
		rules[i] = r
	}
	return rules, nil
}

// AddRule adds one rule in wire format.
func (c *Control) AddRule(wf rule.WireFormat) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.request(uint16(auparse.AUDIT_ADD_RULE), wf)
	if errors.Is(err, unix.EEXIST) {
		return ErrRuleExists
	}
	return err
}

// DeleteRule removes one rule in wire format.
func (c *Control) DeleteRule(wf rule.WireFormat) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.request(uint16(auparse.AUDIT_DEL_RULE), wf)
}

// RulesState compares the rules file at path with the kernel's rules: how
// many of its rules the kernel holds, and the lines it does not (with
// the lines go-libaudit cannot parse). The kernel hands a rule back in
// its own layout, so both sides are compared as auditctl would print
// them.
func (c *Control) RulesState(path string) (loaded int, missing []RuleLine, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("audit rules: %w", err)
	}
	defer fh.Close()
	f, err := ParseRules(fh)
	if err != nil {
		return 0, nil, fmt.Errorf("audit rules %s: %w", path, err)
	}
	held, err := c.Rules()
	if err != nil {
		return 0, nil, err
	}
	have := make(map[string]bool, len(held))
	for _, wf := range held {
		if line, err := rule.ToCommandLine(wf, false); err == nil {
			have[line] = true
		}
	}
	missing = f.Refused
	for _, rl := range f.Rules {
		line, err := rule.ToCommandLine(rl.Wire, false)
		if err == nil && have[line] {
			loaded++
			continue
		}
		missing = append(missing, rl)
	}
	return loaded, missing, nil
}

// auditFilterPrepend is AUDIT_FILTER_PREPEND of linux/audit.h.
const auditFilterPrepend = 0x10

// selfRuleKey marks the rule by which contidd exempts its own system
// calls. A second key, selfStartKey and the process's start time, says
// which process the rule's PID meant, so that a rule is known stale once
// its PID is gone or names another process.
const (
	selfRuleKey  = "contid-self"
	selfStartKey = "contid-self-start="
)

// ExemptSelf makes the kernel audit none of this process's system calls,
// as it does for the audit daemon it names. contidd needs it whenever it
// is not that daemon (beside auditd, or reading on from a predecessor's
// socket, when the kernel still names the predecessor): attributing an
// event costs bpf(2) calls, which the shipped rules audit, whose events
// contidd then attributes, without end; and a full backlog would make
// contidd's own calls wait for room only contidd's reading makes.
//
// The rule names this process's PID, uid and login uid. A process that
// takes the PID over after contidd died is exempt only if it also runs as
// root and outside any login session; and the unit removes the rule as
// soon as contidd has stopped, however it stopped (DropExemptions). The
// executable is not named: a process can set its own (PR_SET_MM_MAP in a
// user namespace). Rules an earlier contidd left are removed first.
// remove takes the rule away again.
func (c *Control) ExemptSelf() (remove func() error, err error) {
	if err := c.DropExemptions(); err != nil {
		return nil, fmt.Errorf("remove a stale exemption: %w", err)
	}
	loginUID := uint64(1<<32 - 1)
	if b, err := os.ReadFile("/proc/self/loginuid"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil {
			loginUID = v
		}
	}
	start, err := procstat.StartTicks(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("exempt own system calls: %w", err)
	}
	parsed, err := flags.Parse(fmt.Sprintf("-A never,exit -F pid=%d -F uid=%d -F auid=%d -k %s -k %s%d",
		os.Getpid(), os.Getuid(), loginUID, selfRuleKey, selfStartKey, start))
	if err != nil {
		return nil, fmt.Errorf("exempt own system calls: %w", err)
	}
	wf, err := rule.Build(parsed)
	if err != nil {
		return nil, fmt.Errorf("exempt own system calls: %w", err)
	}
	// The rule must come before any that would audit the call, so it
	// goes to the front of the list. go-libaudit parses -A but builds it
	// like -a; the kernel reads the flag in audit_rule_data's first word.
	binary.NativeEndian.PutUint32(wf[0:4], binary.NativeEndian.Uint32(wf[0:4])|auditFilterPrepend)
	if err := c.AddRule(wf); err != nil && !errors.Is(err, ErrRuleExists) {
		return nil, fmt.Errorf("exempt own system calls: %w", err)
	}
	return c.DropExemptions, nil
}

// EnsureExempt adds this process's exemption again when it is gone, and
// says whether it had to. Whoever reloads the audit rules removes it
// (auditd's start runs `auditctl -D` before its own rules), and from then
// on each event contidd attributes costs audited bpf(2) calls, whose
// events it attributes in turn: a flood that drowns out everything else.
func (c *Control) EnsureExempt() (restored bool, err error) {
	held, err := c.Rules()
	if err != nil {
		return false, err
	}
	self := os.Getpid()
	for _, wf := range held {
		line, err := rule.ToCommandLine(wf, false)
		if err != nil || !hasKey(line, selfRuleKey) {
			continue
		}
		if pid, _, ok := exemptedProcess(line); ok && pid == self {
			return false, nil
		}
	}
	if _, err := c.ExemptSelf(); err != nil {
		return false, err
	}
	return true, nil
}

// RulesKey is the key every rule of contid.rules carries, so that its
// rules can be told from everyone else's and removed alone.
const RulesKey = "contid"

// DropRules removes every rule carrying key, and no other: the package's
// removal takes contid's rules out of the kernel (contidd
// --drop-audit-rules), whoever loaded them.
func (c *Control) DropRules(key string) error {
	return c.deleteMatching(func(line string) bool { return hasKey(line, key) })
}

// DropExemptions removes the rules ExemptSelf added: this process's, and
// those of a contidd that is gone. The exemption of another contidd that
// still runs stays (two run side by side only in tests, but there one
// must not make the other audit itself without end).
func (c *Control) DropExemptions() error {
	return c.deleteMatching(func(line string) bool {
		return hasKey(line, selfRuleKey) && exemptionStale(line)
	})
}

// exemptionStale: the rule, as go-libaudit prints it, exempts this
// process, or a process that no longer runs. A rule without the start
// key (an older contidd's) is stale.
func exemptionStale(line string) bool {
	pid, start, ok := exemptedProcess(line)
	if !ok || pid == os.Getpid() {
		return true
	}
	now, err := procstat.StartTicks(pid)
	return err != nil || now != start
}

// exemptedProcess reads the PID and start time an exemption rule names.
func exemptedProcess(line string) (pid int, start uint64, ok bool) {
	var havePID, haveStart bool
	// Only a field of its own: a key may hold spaces, and "pid=1" in a
	// key must not pass for the rule's PID.
	fields := strings.Fields(line)
	for i, f := range fields {
		if v, found := strings.CutPrefix(f, "pid="); found && i > 0 && fields[i-1] == "-F" {
			n, err := strconv.Atoi(v)
			pid, havePID = n, err == nil
		}
	}
	for _, k := range ruleKeys(line) {
		if v, found := strings.CutPrefix(k, selfStartKey); found {
			n, err := strconv.ParseUint(v, 10, 64)
			start, haveStart = n, err == nil
		}
	}
	return pid, start, havePID && haveStart
}

// deleteMatching deletes every rule whose command line match accepts, as
// the kernel lists it (the kernel matches a deletion against its own
// layout of the rule).
func (c *Control) deleteMatching(match func(line string) bool) error {
	held, err := c.Rules()
	if err != nil {
		return err
	}
	for _, wf := range held {
		if line, err := rule.ToCommandLine(wf, false); err == nil && match(line) {
			if err := c.DeleteRule(wf); err != nil {
				return fmt.Errorf("delete audit rule %s: %w", line, err)
			}
		}
	}
	return nil
}

// hasKey: the rule, as go-libaudit prints it, carries key exactly.
func hasKey(line, key string) bool {
	for _, k := range ruleKeys(line) {
		if k == key {
			return true
		}
	}
	return false
}

// ruleKeys lists a printed rule's keys. A rule holds all its keys in one
// field, joined by AUDIT_KEY_SEPARATOR (0x01), and go-libaudit prints that
// field as it is.
func ruleKeys(line string) []string {
	var keys []string
	fields := strings.Fields(line)
	for i, f := range fields {
		v, ok := strings.CutPrefix(f, "key=")
		ok = ok && i > 0 && fields[i-1] == "-F"
		if !ok && f == "-k" && i+1 < len(fields) {
			v, ok = fields[i+1], true
		}
		if ok {
			keys = append(keys, strings.Split(v, "\x01")...)
		}
	}
	return keys
}
