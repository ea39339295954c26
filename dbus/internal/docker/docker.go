// Package docker reads what contidd needs from dockerd's Engine API: which
// containers run, and for each its name, image and init PID, and when a
// new one starts. It speaks HTTP/1.1 on dockerd's unix socket with
// net/http; the Docker SDK would bring dozens of modules into a security
// daemon for three GET requests, and its types follow the newest API
// rather than the 1.41 that Docker 20.10 serves.
//
// dockerd's answers become audit labels, so the socket is trusted only
// when a root-owned socket file leads to a server running as root (the
// connection's SO_PEERCRED), and the caller's check of the server's PID
// passes (contidd's: it runs in no container, as root inside a
// privileged container sharing the host's /run could bind a socket of
// its own there). Every request is bounded in time, and every answer in
// size but the list of running containers, which is read one container
// at a time; an event line past its bound is skipped.
package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// APIVersion is the Engine API version asked for: Docker 20.10's, which
// later dockerds still serve.
const APIVersion = "v1.41"

const (
	// RequestTimeout bounds a request with a complete answer (inspect,
	// list), from dial to the last byte.
	RequestTimeout = 10 * time.Second
	// maxInspect bounds one inspect answer: a container's whole
	// configuration, environment and labels included.
	maxInspect = 4 << 20
	// maxEvent bounds one line of the event stream. dockerd copies a
	// container's labels, which are its user's, into each of its events:
	// a longer line is skipped, not the stream.
	maxEvent = 1 << 20
	// eventBuffer is the event reader's buffer; a line longer than it is
	// gathered in pieces, up to maxEvent.
	eventBuffer = 64 << 10
	// maxError bounds an error answer's body.
	maxError = 4 << 10
)

// ErrUntrusted: the socket is not root's, or the server behind it is not
// running as root.
var ErrUntrusted = errors.New("docker socket not trusted")

// Container is what contidd records of a Docker container.
type Container struct {
	ID      string // the full 64-hex ID
	Name    string // without Docker's leading slash
	Image   string // as the user gave it (Config.Image), not the image ID
	PID     int    // the init's PID; 0 when not running
	Running bool
}

// Client is a connection-per-request Engine API client for one socket.
type Client struct {
	socket    string
	checkPeer func(pid int) error
	http      *http.Client
}

// New returns a client for the dockerd socket at path (/run/docker.sock).
// checkPeer, if not nil, is asked about the PID of the server at each
// connection; an error refuses the connection as ErrUntrusted.
func New(socket string, checkPeer func(pid int) error) *Client {
	c := &Client{socket: socket, checkPeer: checkPeer}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext:            c.dial,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  RequestTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}}
	return c
}

// dial connects to the socket once its file is root's and the process
// that accepted is root.
func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var st unix.Stat_t
	if err := unix.Lstat(c.socket, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: c.socket, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Uid != 0 {
		return nil, fmt.Errorf("%w: %s is not a socket owned by root", ErrUntrusted, c.socket)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, err
	}
	cred, err := peerCred(conn.(*net.UnixConn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("peer credentials on %s: %w", c.socket, err)
	}
	if cred.Uid != 0 {
		conn.Close()
		return nil, fmt.Errorf("%w: the server on %s runs as uid %d", ErrUntrusted, c.socket, cred.Uid)
	}
	if c.checkPeer != nil {
		if err := c.checkPeer(int(cred.Pid)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w: the server on %s: %w", ErrUntrusted, c.socket, err)
		}
	}
	return conn, nil
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}

// get sends GET /APIVersion/p and returns the response once its status
// is 200; the caller closes the body.
func (c *Client) get(ctx context.Context, p string, query url.Values) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "docker", Path: "/" + APIVersion + p, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", p, resp.Status, errorMessage(resp.Body))
	}
	return resp, nil
}

// errorMessage reads the Engine API's {"message": ...} error body.
func errorMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxError))
	var e struct{ Message string }
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(b))
}

// getJSON decodes a complete answer of at most limit bytes into v.
func (c *Client) getJSON(ctx context.Context, p string, query url.Values, limit int64, v any) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.get(ctx, p, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("GET %s: answer longer than %d bytes", p, limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", p, err)
	}
	return nil
}

// Inspect returns container id's record (GET /containers/ID/json).
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	if !ValidID(id) {
		return Container{}, fmt.Errorf("not a full container ID: %q", id)
	}
	var raw json.RawMessage
	if err := c.getJSON(ctx, "/containers/"+id+"/json", nil, maxInspect, &raw); err != nil {
		return Container{}, err
	}
	ct, err := ParseInspect(raw)
	if err != nil {
		return Container{}, err
	}
	if ct.ID != id {
		return Container{}, fmt.Errorf("asked for container %s, dockerd answered for %s", id, ct.ID)
	}
	return ct, nil
}

// Running returns the IDs of the running containers (GET /containers/json,
// which lists only those by default). The list carries each container's
// labels, which its user chose, so it has no bound as a whole: it is read
// one container at a time, only its ID kept, within RequestTimeout.
func (c *Client) Running(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.get(ctx, "/containers/json", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ids, err := ReadList(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /containers/json: %w", err)
	}
	return ids, nil
}

// Events opens the stream of the container events that matter to
// naming: create (dockerd knows the name before the container's cgroup
// exists), rename, start, and destroy. Open it before listing the running
// containers, so that none starts unseen between the list and the stream.
func (c *Client) Events(ctx context.Context) (*Events, error) {
	filters, _ := json.Marshal(map[string][]string{"type": {"container"}, "event": {ActionCreate, ActionRename, ActionStart, ActionDestroy}})
	resp, err := c.get(ctx, "/events", url.Values{"filters": {string(filters)}})
	if err != nil {
		return nil, err
	}
	return NewEvents(resp.Body), nil
}

// The container actions Events reports.
const (
	ActionCreate  = "create"
	ActionRename  = "rename"
	ActionStart   = "start"
	ActionDestroy = "destroy"
)

// Event is one container event. Name is dockerd's own attribute of the
// event, the container's name at the time (after a rename, the new one):
// dockerd sets it after copying the container's labels into the same
// attributes, so a label cannot stand in for it. The image is not taken
// from events: dockerd sets that attribute only when Config.Image is not
// empty, and a container created through the API with no image and a
// label "image" has the label there instead; the start's inspect gives
// Config.Image.
type Event struct {
	Action string
	ID     string
	Name   string
}

// Events is an open event stream: dockerd writes one JSON object a line.
type Events struct {
	body     io.ReadCloser
	r        *bufio.Reader
	line     []byte
	overlong int
}

// NewEvents reads an event stream from body, which Close closes.
func NewEvents(body io.ReadCloser) *Events {
	return &Events{body: body, r: bufio.NewReaderSize(body, eventBuffer)}
}

// Next returns the next create, rename, start or destroy event. It
// blocks until one comes, the stream ends (io.EOF: dockerd stopped) or
// the context of Events ends. A line longer than maxEvent is skipped
// (Overlong counts them): it is a container's event all the same, but
// one whose labels its user made too big to read.
func (e *Events) Next() (Event, error) {
	for {
		line, over, err := e.readLine()
		if err != nil {
			return Event{}, err
		}
		if over {
			e.overlong++
			continue
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		ev, ok, err := ParseEvent(line)
		if err != nil {
			return Event{}, err
		}
		if ok {
			return ev, nil
		}
	}
}

// Overlong is the number of event lines skipped for being longer than
// maxEvent.
func (e *Events) Overlong() int { return e.overlong }

// readLine returns the next line without its newline, or over when it
// was longer than maxEvent: its rest is then read and dropped up to the
// newline, so memory stays at maxEvent whatever the line's length.
func (e *Events) readLine() (line []byte, over bool, err error) {
	e.line = e.line[:0]
	for {
		chunk, err := e.r.ReadSlice('\n')
		if !over {
			if len(e.line)+len(chunk) > maxEvent+1 {
				over = true
				e.line = e.line[:0]
			} else {
				e.line = append(e.line, chunk...)
			}
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(e.line, []byte("\n")), over, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && !over && len(strings.TrimSpace(string(e.line))) > 0:
			// A last line without its newline: dockerd stopped mid-line.
			return nil, false, io.ErrUnexpectedEOF
		default:
			return nil, false, err
		}
	}
}

// Close ends the stream.
func (e *Events) Close() error { return e.body.Close() }

// ParseEvent reads one event of the stream: ok when it is a container's
// create, rename, start or destroy, with that container's full ID.
func ParseEvent(b []byte) (ev Event, ok bool, err error) {
	var raw struct {
		Type   string
		Action string
		Actor  struct {
			ID         string
			Attributes map[string]string
		}
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Event{}, false, fmt.Errorf("event: %w", err)
	}
	if raw.Type != "container" {
		return Event{}, false, nil
	}
	switch raw.Action {
	case ActionCreate, ActionRename, ActionStart, ActionDestroy:
	default:
		return Event{}, false, nil
	}
	if !ValidID(raw.Actor.ID) {
		return Event{}, false, fmt.Errorf("%s event for %q, not a full container ID", raw.Action, raw.Actor.ID)
	}
	name := raw.Actor.Attributes["name"]
	return Event{Action: raw.Action, ID: raw.Actor.ID, Name: strings.TrimPrefix(name, "/")}, true, nil
}

// ParseInspect reads an inspect answer.
func ParseInspect(b []byte) (Container, error) {
	var in struct {
		ID    string `json:"Id"`
		Name  string
		State *struct {
			Running bool
			Pid     int
		}
		Config *struct{ Image string }
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return Container{}, fmt.Errorf("inspect: %w", err)
	}
	if !ValidID(in.ID) {
		return Container{}, fmt.Errorf("inspect: %q is not a full container ID", in.ID)
	}
	if in.State == nil {
		return Container{}, fmt.Errorf("inspect %s: no State", in.ID)
	}
	ct := Container{ID: in.ID, Name: strings.TrimPrefix(in.Name, "/"), Running: in.State.Running}
	if ct.Running {
		if in.State.Pid <= 0 {
			return Container{}, fmt.Errorf("inspect %s: running without a PID", in.ID)
		}
		ct.PID = in.State.Pid
	}
	if in.Config != nil {
		ct.Image = in.Config.Image
	}
	return ct, nil
}

// ReadList reads the IDs of a container list, one container at a time:
// the decoder holds one container's JSON, labels included, never the
// whole list, and keeps only its ID.
func ReadList(r io.Reader) ([]string, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("container list: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("container list: starts with %v, not an array", tok)
	}
	ids := []string{}
	for dec.More() {
		var c struct {
			ID string `json:"Id"`
		}
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("container list: %w", err)
		}
		if !ValidID(c.ID) {
			return nil, fmt.Errorf("container list: %q is not a full container ID", c.ID)
		}
		ids = append(ids, c.ID)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("container list: %w", err)
	}
	return ids, nil
}

// ValidID reports whether s is a full container ID: 64 lowercase hex.
func ValidID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// ContainerCgroup returns the cgroup of container id, given the cgroup2
// path of the process dockerd says is its init: the first component that
// holds the full ID (docker-ID.scope for the systemd driver, ID under
// /docker for cgroupfs). The first, because a child cgroup below it is
// named by whoever runs in the container. A path without the ID is not
// the container's (its init exited and the PID was reused), and is an
// error rather than a guess.
func ContainerCgroup(procPath, id string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("not a full container ID: %q", id)
	}
	p := path.Clean("/" + procPath)
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		if strings.Contains(parts[i], id) {
			return "/" + strings.Join(parts[:i+1], "/"), nil
		}
	}
	return "", fmt.Errorf("cgroup %s is not container %.12s's: its process exited", p, id)
}

// IsAbsent reports whether err says dockerd is not there (no socket, or
// nothing listening), as opposed to answering wrongly.
func IsAbsent(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
}
