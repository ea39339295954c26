package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contid/contid/internal/testenv"
)

const (
	id1 = "4f66ad9a0b2e3d9f1b7c8e5a6d2f0c1b3a4e5d6f7a8b9c0d1e2f3a4b5c6d7e8f"
	id2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// Events as Docker 20.10 writes them on GET /events: one object a line,
// with the legacy status/id/from beside Type/Action/Actor.
func TestParseEvent(t *testing.T) {
	tests := []struct {
		name, line string
		want       Event
		ok         bool
		err        string
	}{
		{"start", `{"status":"start","id":"` + id1 + `","from":"contid-busybox","Type":"container","Action":"start","Actor":{"ID":"` + id1 + `","Attributes":{"image":"contid-busybox","name":"dweb"}},"scope":"local","time":1733490000,"timeNano":1733490000123456789}`,
			Event{Action: ActionStart, ID: id1, Name: "dweb"}, true, ""},
		{"create", `{"status":"create","id":"` + id1 + `","from":"contid-busybox","Type":"container","Action":"create","Actor":{"ID":"` + id1 + `","Attributes":{"image":"contid-busybox","name":"dweb","maintainer":"x"}},"scope":"local","time":1733490000,"timeNano":1733490000000000000}`,
			Event{Action: ActionCreate, ID: id1, Name: "dweb"}, true, ""},
		{"destroy", `{"status":"destroy","id":"` + id1 + `","from":"contid-busybox","Type":"container","Action":"destroy","Actor":{"ID":"` + id1 + `","Attributes":{"image":"contid-busybox","name":"dweb"}},"scope":"local","time":1733490002,"timeNano":1733490002000000000}`,
			Event{Action: ActionDestroy, ID: id1, Name: "dweb"}, true, ""},
		// docker rename dweb dweb2: the new name in "name", the old one,
		// slash and all, in "oldName".
		{"rename", `{"status":"rename","id":"` + id1 + `","from":"contid-busybox","Type":"container","Action":"rename","Actor":{"ID":"` + id1 + `","Attributes":{"image":"contid-busybox","name":"dweb2","oldName":"/dweb"}},"scope":"local","time":1733490003,"timeNano":1733490003000000000}`,
			Event{Action: ActionRename, ID: id1, Name: "dweb2"}, true, ""},
		// POST /containers/create?name=dimg with "Image":"" and labels
		// image and name: dockerd copies the labels into the attributes,
		// sets no image (Config.Image is empty) and overwrites name.
		{"create with no image and an image label", `{"status":"create","id":"` + id1 + `","from":"registry.example/forged:1","Type":"container","Action":"create","Actor":{"ID":"` + id1 + `","Attributes":{"image":"registry.example/forged:1","name":"dimg"}},"scope":"local","time":1733490000,"timeNano":1733490000000000000}`,
			Event{Action: ActionCreate, ID: id1, Name: "dimg"}, true, ""},
		{"die is not followed", `{"status":"die","id":"` + id1 + `","from":"contid-busybox","Type":"container","Action":"die","Actor":{"ID":"` + id1 + `","Attributes":{"exitCode":"0","image":"contid-busybox","name":"dweb"}},"scope":"local","time":1733490001,"timeNano":1733490001000000000}`, Event{}, false, ""},
		{"a network's create is not a container's", `{"Type":"network","Action":"create","Actor":{"ID":"` + id1 + `"}}`, Event{}, false, ""},
		{"exec_start is not a start", `{"status":"exec_start: sh","id":"` + id1 + `","Type":"container","Action":"exec_start: sh","Actor":{"ID":"` + id1 + `"}}`, Event{}, false, ""},
		{"short ID", `{"Type":"container","Action":"start","Actor":{"ID":"4f66ad9a0b2e"}}`, Event{}, false, "not a full container ID"},
		{"upper-case ID", `{"Type":"container","Action":"create","Actor":{"ID":"` + strings.ToUpper(id1) + `"}}`, Event{}, false, "not a full container ID"},
		{"ID with a path in it", `{"Type":"container","Action":"start","Actor":{"ID":"../../` + id1[6:] + `"}}`, Event{}, false, "not a full container ID"},
		{"not JSON", `{"Type":"container"`, Event{}, false, "event:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := ParseEvent([]byte(tt.line))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || ev != tt.want || ok != tt.ok {
				t.Fatalf("got (%+v, %v, %v), want (%+v, %v, nil)", ev, ok, err, tt.want, tt.ok)
			}
		})
	}
}

// inspect is GET /containers/ID/json as Docker 20.10 answers it for
// `docker run -d --name dweb --network none contid-busybox sh -c ...`,
// cut to the members around the ones read.
func inspect(id, name, state, image string) string {
	return `{"Id":"` + id + `","Created":"2026-12-06T13:20:01.123456789Z","Path":"sh","Args":["-c","sleep 600"],` +
		`"State":` + state + `,"Image":"sha256:9d5226e6ce3fb6aee2822206a5ef85f38c303d2b37bfc894b419fca2c0501269",` +
		`"ResolvConfPath":"/var/lib/docker/containers/` + id + `/resolv.conf","Name":"` + name + `","RestartCount":0,"Driver":"overlay2",` +
		`"HostConfig":{"NetworkMode":"none","CgroupParent":"","Cgroup":""},` +
		`"Config":{"Hostname":"4f66ad9a0b2e","User":"","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh","-c","sleep 600"],"Image":` + image + `,"Labels":{}}}`
}

const (
	running = `{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":4242,"ExitCode":0,"Error":"","StartedAt":"2026-12-06T13:20:01.5Z","FinishedAt":"0001-01-01T00:00:00Z"}`
	exited  = `{"Status":"exited","Running":false,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":0,"ExitCode":0,"Error":"","StartedAt":"2026-12-06T13:20:01.5Z","FinishedAt":"2026-12-06T13:20:02Z"}`
)

func TestParseInspect(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Container
		err  string
	}{
		{"running", inspect(id1, "/dweb", running, `"contid-busybox"`), Container{ID: id1, Name: "dweb", Image: "contid-busybox", PID: 4242, Running: true}, ""},
		{"image with a tag and registry", inspect(id1, "/dweb", running, `"registry.example:5000/team/web:1.2"`), Container{ID: id1, Name: "dweb", Image: "registry.example:5000/team/web:1.2", PID: 4242, Running: true}, ""},
		{"exited: no PID", inspect(id1, "/dweb", exited, `"contid-busybox"`), Container{ID: id1, Name: "dweb", Image: "contid-busybox"}, ""},
		{"running with PID 0", inspect(id1, "/dweb", strings.Replace(running, `"Pid":4242`, `"Pid":0`, 1), `"contid-busybox"`), Container{}, "running without a PID"},
		{"no State", `{"Id":"` + id1 + `","Name":"/dweb"}`, Container{}, "no State"},
		{"short ID", inspect("4f66ad9a0b2e", "/dweb", running, `"contid-busybox"`), Container{}, "not a full container ID"},
		{"not JSON", `<html>`, Container{}, "inspect:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInspect([]byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// bigLabels is a Labels object as `docker run --label-file` makes it
// from 150 labels of 60 KB: 9 MB, past every bound but the list's.
func bigLabels() string {
	var b strings.Builder
	b.WriteString("{")
	v := strings.Repeat("a", 60000)
	for i := 1; i <= 150; i++ {
		if i > 1 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"big%d":"%s"`, i, v)
	}
	b.WriteString("}")
	return b.String()
}

// GET /containers/json as Docker 20.10 answers it (running ones only).
func TestReadList(t *testing.T) {
	entry := func(id, name, labels string) string {
		return `{"Id":"` + id + `","Names":["/` + name + `"],"Image":"contid-busybox","ImageID":"sha256:9d5226e6ce3f","Command":"sh -c 'sleep 600'","Created":1733490001,"Ports":[],"Labels":` + labels + `,"State":"running","Status":"Up 3 seconds","HostConfig":{"NetworkMode":"none"},"NetworkSettings":{"Networks":{"none":{}}},"Mounts":[]}`
	}
	big := bigLabels()
	// Four such containers, as a docker user can run them: 36 MB.
	var four []string
	for i := 0; i < 4; i++ {
		four = append(four, entry(fmt.Sprintf("%064x", i+1), fmt.Sprint("dbig", i), big))
	}
	tests := []struct {
		name string
		body string
		want []string
		err  string
	}{
		{"none", `[]`, []string{}, ""},
		{"two", `[` + entry(id1, "dweb", `{}`) + `,` + entry(id2, "other", `{}`) + `]`, []string{id1, id2}, ""},
		{"first with 9 MB of labels", `[` + entry(id1, "dbig", big) + `,` + entry(id2, "dvictim", `{}`) + `]`, []string{id1, id2}, ""},
		{"36 MB of labels before the last", `[` + strings.Join(four, ",") + `,` + entry(id2, "dvictim", `{}`) + `]`,
			[]string{fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2), fmt.Sprintf("%064x", 3), fmt.Sprintf("%064x", 4), id2}, ""},
		{"a short ID", `[` + entry("4f66ad9a0b2e", "dweb", `{}`) + `]`, nil, "not a full container ID"},
		{"an error object", `{"message":"client version 1.41 is too new"}`, nil, "not an array"},
		{"cut short", `[` + entry(id1, "dweb", `{}`) + `,{"Id":"`, nil, "container list:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadList(strings.NewReader(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// An event line past maxEvent (a container's labels, which dockerd copies
// into each of its events) is skipped and the stream goes on; the
// control, the same big labels within the bound, is read.
func TestEventsNext(t *testing.T) {
	event := func(action, id, name, labels string) string {
		return `{"status":"` + action + `","id":"` + id + `","from":"contid-busybox","Type":"container","Action":"` + action + `","Actor":{"ID":"` + id + `","Attributes":{` + labels + `"image":"contid-busybox","name":"` + name + `"}},"scope":"local","time":1733490000,"timeNano":1733490000000000000}` + "\n"
	}
	big := bigLabels()
	big = big[1:len(big)-1] + ","
	within := `"big":"` + strings.Repeat("a", maxEvent-600) + `",`
	tests := []struct {
		name     string
		stream   string
		want     []Event
		overlong int
		err      error
	}{
		{"9 MB create then a start", event("create", id1, "dbig", big) + event("start", id1, "dbig", big) + event("start", id2, "dvictim", ""),
			[]Event{{Action: ActionStart, ID: id2, Name: "dvictim"}}, 2, io.EOF},
		{"just within the bound", event("create", id1, "dbig", within) + event("start", id2, "dvictim", ""),
			[]Event{{Action: ActionCreate, ID: id1, Name: "dbig"}, {Action: ActionStart, ID: id2, Name: "dvictim"}}, 0, io.EOF},
		{"one byte past it", event("create", id1, "dbig", `"x":"`+strings.Repeat("a", maxEvent)+`",`) + event("start", id2, "dvictim", ""),
			[]Event{{Action: ActionStart, ID: id2, Name: "dvictim"}}, 1, io.EOF},
		{"blank lines and other events", "\n" + `{"Type":"network","Action":"connect","Actor":{"ID":"x"}}` + "\n" + event("destroy", id2, "dvictim", ""),
			[]Event{{Action: ActionDestroy, ID: id2, Name: "dvictim"}}, 0, io.EOF},
		{"cut mid-line", event("start", id2, "dvictim", "") + `{"status":"st`,
			[]Event{{Action: ActionStart, ID: id2, Name: "dvictim"}}, 0, io.ErrUnexpectedEOF},
		{"cut in an overlong line", event("start", id2, "dvictim", "") + event("create", id1, "dbig", big)[:5<<20],
			[]Event{{Action: ActionStart, ID: id2, Name: "dvictim"}}, 0, io.EOF},
	}
	if l := len(event("create", id1, "dbig", within)) - 1; l > maxEvent || l < maxEvent-1000 {
		t.Fatalf("the control line is %d bytes, not just within %d", l, maxEvent)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := NewEvents(io.NopCloser(strings.NewReader(tt.stream)))
			var got []Event
			var err error
			for {
				var e Event
				if e, err = ev.Next(); err != nil {
					break
				}
				got = append(got, e)
			}
			if !errors.Is(err, tt.err) || !slices.Equal(got, tt.want) || ev.Overlong() != tt.overlong {
				t.Fatalf("got %+v, %d overlong, %v; want %+v, %d, %v", got, ev.Overlong(), err, tt.want, tt.overlong, tt.err)
			}
		})
	}
}

// The init's cgroup must name the container's full ID: a PID dockerd
// reported that has since been reused lies in some other cgroup.
func TestContainerCgroup(t *testing.T) {
	tests := []struct {
		name, proc, id string
		want, err      string
	}{
		{"systemd driver", "/system.slice/docker-" + id1 + ".scope", id1, "/system.slice/docker-" + id1 + ".scope", ""},
		{"cgroupfs driver", "/docker/" + id1, id1, "/docker/" + id1, ""},
		{"a child the container made", "/system.slice/docker-" + id1 + ".scope/init", id1, "/system.slice/docker-" + id1 + ".scope", ""},
		{"a child named after the ID", "/system.slice/docker-" + id1 + ".scope/" + id1, id1, "/system.slice/docker-" + id1 + ".scope", ""},
		{"docker in docker", "/system.slice/docker-" + id2 + ".scope/docker/" + id1, id1, "/system.slice/docker-" + id2 + ".scope/docker/" + id1, ""},
		{"PID reused by a service", "/system.slice/cron.service", id1, "", "not container"},
		{"PID reused by another container", "/system.slice/docker-" + id2 + ".scope", id1, "", "not container"},
		{"a prefix of the ID only", "/system.slice/docker-" + id1[:63] + ".scope", id1, "", "not container"},
		{"short ID asked for", "/system.slice/docker-" + id1 + ".scope", id1[:12], "", "not a full container ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ContainerCgroup(tt.proc, tt.id)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, err %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The socket is trusted only when root owns it and the server passes the
// caller's check; the same listener is accepted (the control) when both
// hold, so each refusal is the check's doing.
func TestDialTrust(t *testing.T) {
	testenv.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"Id":"` + id1 + `","Names":["/dweb"]}]`))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	self := os.Getpid()
	inContainer := func(pid int) error { return fmt.Errorf("pid %d runs in container 7", pid) }
	tests := []struct {
		name      string
		owner     int
		checkPeer func(int) error
		untrusted bool
	}{
		{"root's socket, host server", 0, func(pid int) error {
			if pid != self {
				return fmt.Errorf("peer pid %d, want %d", pid, self)
			}
			return nil
		}, false},
		{"a user's socket", 1000, nil, true},
		{"root's socket, server in a container", 0, inContainer, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chown(sock, tt.owner, 0); err != nil {
				t.Fatal(err)
			}
			ids, err := New(sock, tt.checkPeer).Running(context.Background())
			if tt.untrusted {
				if !errors.Is(err, ErrUntrusted) {
					t.Fatalf("Running: %v, %v; want ErrUntrusted", ids, err)
				}
				return
			}
			if err != nil || len(ids) != 1 || ids[0] != id1 {
				t.Fatalf("Running: %v, %v; want [%s]", ids, err, id1)
			}
		})
	}
}
