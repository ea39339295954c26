package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"github.com/elastic/go-libaudit/v2/rule"
	"golang.org/x/sys/unix"
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

// ParseRules parses the syscall rules (-a, -A) of a file in auditctl
// syntax, the form /etc/audit/rules.d uses. Control lines (-D, -b, -e,
// -f, ...) are skipped: LoadRules adds rules, it does not reconfigure
// auditing.
func ParseRules(r io.Reader) ([]rule.WireFormat, []string, error) {
	var wires []rule.WireFormat
	var lines []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "-a") && !strings.HasPrefix(line, "-A") {
			continue
		}
		rl, err := parseRuleLine(line)
		if err != nil {
			return nil, nil, fmt.Errorf("rules line %d %q: %w", n, line, err)
		}
		wf, err := rule.Build(rl)
		if err != nil {
			return nil, nil, fmt.Errorf("rules line %d %q: %w", n, line, err)
		}
		wires = append(wires, wf)
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return wires, lines, nil
}

// LoadRules adds every rule of the file to the kernel. A rule the kernel
// already holds (EEXIST) is left alone, so loading twice is harmless. It
// returns the rules it added, so a caller (a test) can remove exactly
// those again.
func (c *Control) LoadRules(path string) ([]rule.WireFormat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit rules: %w", err)
	}
	defer f.Close()
	wires, lines, err := ParseRules(f)
	if err != nil {
		return nil, fmt.Errorf("audit rules %s: %w", path, err)
	}
	var added []rule.WireFormat
	for i, wf := range wires {
		if err := c.AddRule(wf); err != nil {
			if errors.Is(err, ErrRuleExists) {
				continue
			}
			return added, fmt.Errorf("audit rules %s: %q: %w", path, lines[i], err)
		}
		added = append(added, wf)
	}
	return added, nil
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

// ErrRuleSyntax: a rules line uses something parseRuleLine does not know.
var ErrRuleSyntax = errors.New("unsupported audit rule syntax")

// parseRuleLine reads the subset of auditctl syntax contid's rules use:
// -a/-A list,action, -F field<op>value, -S syscall[,syscall], -k key.
// Values are single words, so no shell quoting is needed (and no extra
// module: go-libaudit's own flag parser pulls in a shell-quote package).
func parseRuleLine(line string) (rule.Rule, error) {
	words := strings.Fields(line)
	r := &rule.SyscallRule{}
	for i := 0; i < len(words); i++ {
		flag := words[i]
		if i+1 >= len(words) {
			return nil, fmt.Errorf("%w: %s needs a value", ErrRuleSyntax, flag)
		}
		i++
		arg := words[i]
		switch flag {
		case "-a", "-A":
			r.Type = rule.AppendSyscallRuleType
			if flag == "-A" {
				r.Type = rule.PrependSyscallRuleType
			}
			list, action, ok := strings.Cut(arg, ",")
			if !ok {
				return nil, fmt.Errorf("%w: %s %s: want list,action", ErrRuleSyntax, flag, arg)
			}
			if list == "always" || list == "never" {
				list, action = action, list
			}
			r.List, r.Action = list, action
		case "-S":
			r.Syscalls = append(r.Syscalls, strings.Split(arg, ",")...)
		case "-k":
			r.Keys = append(r.Keys, arg)
		case "-F":
			f, err := parseFilter(arg)
			if err != nil {
				return nil, err
			}
			r.Filters = append(r.Filters, f)
		default:
			return nil, fmt.Errorf("%w: flag %s", ErrRuleSyntax, flag)
		}
	}
	if r.Type == 0 {
		return nil, fmt.Errorf("%w: no -a or -A", ErrRuleSyntax)
	}
	return r, nil
}

func parseFilter(arg string) (rule.FilterSpec, error) {
	// Longest operators first, so "!=" is not read as "=".
	for _, op := range []string{"!=", "<=", ">=", "&=", "=", "<", ">", "&"} {
		if i := strings.Index(arg, op); i > 0 {
			return rule.FilterSpec{
				Type:       rule.ValueFilterType,
				LHS:        arg[:i],
				Comparator: op,
				RHS:        arg[i+len(op):],
			}, nil
		}
	}
	return rule.FilterSpec{}, fmt.Errorf("%w: filter %q", ErrRuleSyntax, arg)
}
