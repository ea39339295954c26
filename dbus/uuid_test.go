package dbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
	"github.com/contid/contid/registry"
)

// A container tagged with or without the UUID option has an instance
// UUID: the one given, or one contidd drew. The UUID property says it
// over the bus, and the journal carries it as AUDIT_CONTAINER_UUID on an
// audit event of a process in the container and on contidd's own tag and
// create records of it, next to the container's other labels; a match on
// it finds that container's entries and no other's. A UUID that is not
// canonical, is the nil UUID, or is held by a living container is
// refused with its error name, and the refusal is recorded. The UUIDs
// outlive a crash of contidd.
func TestContainerUUID(t *testing.T) {
	e := newEnv(t, "[Audit]\nSocket=multicast\n")
	auditRuleSession(t, "-a always,exit -F arch=b64 -S execve -k contid-uuid-"+registry.NewUUID()[:8])
	j := testenv.StartJournald(t)
	d := e.start("--journal-socket", j.Socket)
	c := e.p2pClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// READY=1 waits for the audit reader (TestAuditReaderJoinedAtReady).
	if mi, err := c.Manager(ctx); err != nil || mi.AuditStream != "multicast" {
		t.Fatalf("AuditStream %q (%v) once contidd is ready, want multicast\n%s", mi.AuditStream, err, d.logText())
	}

	given := registry.NewUUID()
	tests := []struct {
		name string
		uuid string // the option; "" leaves it out
	}{
		{"drawn", ""},
		{"given", given},
	}
	uuids := map[contid.ID]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cg := e.cgroup(tt.name)
			id, err := c.TagCgroup(ctx, cg, 0, client.TagOptions{Name: "uuid-" + tt.name, UUID: tt.uuid})
			if err != nil {
				t.Fatal(err)
			}
			idStr := strconv.FormatUint(uint64(id), 10)
			ci, err := c.Container(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.uuid != "" && ci.UUID != tt.uuid:
				t.Fatalf("UUID property %q, want the given %q", ci.UUID, tt.uuid)
			case tt.uuid == "" && (registry.ValidateUUID(ci.UUID) != nil || ci.UUID == "" || ci.UUID[14] != '4'):
				t.Fatalf("UUID property %q is not a drawn version 4 UUID", ci.UUID)
			}
			for other, u := range uuids {
				if u == ci.UUID {
					t.Fatalf("container %d has container %d's UUID %s", id, other, u)
				}
			}
			uuids[id] = ci.UUID
			// The property as a bus client sees it, typed s.
			out, err := busctl(false, "unix:path="+e.sock, "get-property", client.BusName, string(client.ContainerPath(id)), client.ContainerInterface, "UUID")
			if err != nil || strings.TrimSpace(out) != `s "`+ci.UUID+`"` {
				t.Fatalf("busctl get-property UUID: %q, %v; want s %q", out, err, ci.UUID)
			}

			// contidctl's JSON, for a container and in the list.
			for _, args := range [][]string{{"show", idStr}, {"status", idStr}, {"list"}} {
				out, errOut, code := ctl(t, nil, nil, append([]string{"--p2p", e.sock, "--json=short"}, args...)...)
				var objs []map[string]any
				if code == 0 && args[0] != "list" {
					var obj map[string]any
					err = json.Unmarshal([]byte(out), &obj)
					objs = append(objs, obj)
				} else if code == 0 {
					err = json.Unmarshal([]byte(out), &objs)
				}
				if code != 0 || err != nil {
					t.Fatalf("contidctl %v: exit %d, %v: %s%s", args, code, err, out, errOut)
				}
				found := false
				for _, o := range objs {
					if o["id"] == float64(id) {
						found = true
						if o["uuid"] != ci.UUID {
							t.Errorf("contidctl %v: uuid %#v, want %q", args, o["uuid"], ci.UUID)
						}
					}
				}
				if !found {
					t.Errorf("contidctl %v does not show container %d: %s", args, id, out)
				}
			}

			// An exec in the container, audited by the test's rule.
			p := e.startIn(cg, nil, "/bin/sh", "-c", "exec /bin/true")
			_ = p.Wait()
			var byUUID []testenv.Entry
			var sawEvent, sawTag, sawCreate bool
			for deadline := time.Now().Add(10 * time.Second); !sawEvent && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				byUUID = j.Query(t, "AUDIT_CONTAINER_UUID="+ci.UUID)
				for _, en := range byUUID {
					sawEvent = sawEvent || en.Get("AUDIT_EVENT_ID") != ""
				}
			}
			if !sawEvent {
				all := j.Query(t, "AUDIT_CONTAINER_ID="+idStr)
				t.Fatalf("no audit event with AUDIT_CONTAINER_UUID=%s in the journal within 10s; container %d's entries: %v\ncontidd:\n%s", ci.UUID, id, all, d.logText())
			}
			for _, en := range byUUID {
				if got := en.Get("AUDIT_CONTAINER_ID"); got != idStr {
					t.Errorf("an entry matched by container %d's UUID is container %s's: %v", id, got, en)
				}
				switch en.Get("MESSAGE_ID") {
				case "":
				case journal.MessageTagGranted:
					sawTag = true
				case journal.MessageContainerCreated:
					sawCreate = true
				default:
					continue
				}
				for field, want := range map[string]string{
					"AUDIT_CONTAINER_NAME":    "uuid-" + tt.name,
					"AUDIT_CONTAINER_MANAGER": "api",
				} {
					if got := en.Get(field); got != want {
						t.Errorf("%s = %q, want %q on %v", field, got, want, en)
					}
				}
			}
			if !sawEvent || !sawTag || !sawCreate {
				t.Fatalf("entries with the UUID: audit event %v, tag record %v, create record %v; want all:\n%v", sawEvent, sawTag, sawCreate, byUUID)
			}
		})
	}

	refusals := []struct {
		name, uuid, want string
	}{
		{"not canonical", strings.ToUpper(given), client.NameInvalidArgs},
		{"nil", "00000000-0000-0000-0000-000000000000", client.NameInvalidArgs},
		{"not a UUID", "pod-1", client.NameInvalidArgs},
		{"held by a living container", given, client.NameUUIDInUse},
	}
	for _, tt := range refusals {
		t.Run("refused "+tt.name, func(t *testing.T) {
			before := len(uuids)
			_, err := c.TagCgroup(ctx, e.cgroup("refused"), 0, client.TagOptions{UUID: tt.uuid})
			if !client.IsRemote(err, tt.want) {
				t.Fatalf("TagCgroup with UUID %q: %v, want %s", tt.uuid, err, tt.want)
			}
			if !errors.Is(err, map[string]error{client.NameInvalidArgs: contid.ErrInvalidArgs, client.NameUUIDInUse: contid.ErrUUIDInUse}[tt.want]) {
				t.Errorf("the client does not map %s back to its sentinel: %v", tt.want, err)
			}
			if list, err := c.ListContainers(ctx); err != nil || len(list) != before {
				t.Fatalf("after the refusal %d containers (%v), want %d", len(list), err, before)
			}
		})
	}
	// The refusal of the held UUID is recorded with it, as a refused
	// explicit ID is with that ID.
	refused := j.WaitFor(t, 5*time.Second, 1, "AUDIT_CONTAINER_UUID="+given, "MESSAGE_ID="+journal.MessageTagRefused)
	if len(refused) == 0 || refused[0].Get("AUDIT_RESULT") != "failed" {
		t.Fatalf("no failed tag record with the held UUID: %v", refused)
	}
	if !d.alive() {
		t.Fatalf("contidd died:\n%s", d.logText())
	}

	// A crash and restart: each container keeps its UUID.
	d.kill()
	e.start("--journal-socket", j.Socket)
	c = e.p2pClient()
	for id, u := range uuids {
		ci, err := c.Container(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ci.UUID != u {
			t.Errorf("container %d after a restart: UUID %q, was %q", id, ci.UUID, u)
		}
	}
}

// auditRuleSession holds kernel auditing on for the test and loads one
// audit rule until it ends.
func auditRuleSession(t *testing.T, line string) {
	t.Helper()
	ctl, err := audit.NewControl()
	if err != nil {
		testenv.Missing(t, "skipped: audit netlink unavailable: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	st, err := ctl.Status()
	if err != nil {
		testenv.Missing(t, "skipped: AUDIT_GET refused (needs CAP_AUDIT_CONTROL in the initial namespaces): %v", err)
	}
	if st.Enabled == 2 {
		testenv.Missing(t, "skipped: the audit configuration is locked (enabled=2)")
	}
	testenv.HoldAuditing(t, ctl, false)
	f, err := audit.ParseRules(strings.NewReader(line))
	if err != nil || len(f.Rules) != 1 {
		t.Fatalf("rule %q: %v %+v", line, err, f.Refused)
	}
	wire := f.Rules[0].Wire
	if err := ctl.AddRule(wire); err != nil && !errors.Is(err, audit.ErrRuleExists) {
		t.Fatalf("add rule %q: %v", line, err)
	}
	t.Cleanup(func() {
		if err := ctl.DeleteRule(wire); err != nil {
			t.Errorf("delete rule %q: %v", line, err)
		}
	})
}
