package dbus_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/contid/contid/dbus/client"
)

// ListContainers reads the same on the peer-to-peer socket, whose reply
// body contidd writes by hand, as on the system bus, where godbus writes
// it: to sd-bus (busctl) and to godbus (the client), whatever the names
// and cgroup paths do to the padding, multi-byte UTF-8 and long paths
// included, with no containers and with several hundred.
func TestListContainersBothTransports(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	p2p, bus := e.p2pClient(), e.busClient()
	ctx := context.Background()
	compare := func(stage string) {
		t.Helper()
		var outs [2]string
		for i, addr := range []string{"unix:path=" + e.sock, e.busAddr} {
			out, err := busctl(false, addr, "--json=short", "call", client.BusName, "/org/contid1", client.ManagerInterface, "ListContainers")
			if err != nil {
				t.Fatalf("%s: busctl on %s: %v: %.300s", stage, addr, err, out)
			}
			outs[i] = out
		}
		if outs[0] != outs[1] {
			t.Fatalf("%s: busctl reads the peer-to-peer reply differently:\n p2p %.2000s\n bus %.2000s", stage, outs[0], outs[1])
		}
		lp, err := p2p.ListContainers(ctx)
		if err != nil {
			t.Fatalf("%s: godbus on the socket: %v", stage, err)
		}
		lb, err := bus.ListContainers(ctx)
		if err != nil {
			t.Fatalf("%s: godbus on the bus: %v", stage, err)
		}
		if !reflect.DeepEqual(lp, lb) {
			t.Fatalf("%s: godbus reads %d rows on the socket, %d on the bus, which differ", stage, len(lp), len(lb))
		}
		t.Logf("%s: %d rows, busctl output %d bytes, same on both transports", stage, len(lp), len(outs[0]))
	}
	compare("no containers")

	tag := func(rel, name string) {
		t.Helper()
		if _, err := p2p.TagCgroup(ctx, e.cgroup(rel), 0, client.TagOptions{Name: name}); err != nil {
			t.Fatalf("TagCgroup %.80s: %v", rel, err)
		}
	}
	for i := range 9 {
		tag("pad"+strings.Repeat("p", i), strings.Repeat("n", i))
	}
	tag("日本-ünïcode-😀", "conteneur-é-😀")
	// The longest path mkdir takes under /sys/fs/cgroup: 255-byte
	// components down to near PATH_MAX.
	long := "deep"
	for len(e.cgBase)+len(long)+1+256 < 4000 {
		long += "/" + strings.Repeat("L", 255)
	}
	tag(long, strings.Repeat("N", 255))
	nested := e.cgroup("outer")
	if _, err := p2p.TagCgroup(ctx, nested, 0, client.TagOptions{Name: "outer", AllowNesting: true}); err != nil {
		t.Fatal(err)
	}
	compare("odd names")

	for i := range 300 {
		tag(fmt.Sprintf("many/c%03d%s", i, strings.Repeat("x", i%8)), fmt.Sprintf("m%d", i))
	}
	compare("300 more")
}
