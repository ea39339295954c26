package dbus_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// Listings on the socket while containers are being tagged and exit are
// whole and sorted, each row as tagged, and the last one lists them all.
func TestListContainersWhileTagging(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	ctx := context.Background()
	const n = 400
	paths := make([]string, n)
	for i := range paths {
		paths[i] = e.cgroup(fmt.Sprintf("w%03d-%s", i, strings.Repeat("é", i%9)))
	}
	done := make(chan struct{})
	errs := make(chan error, 16)
	var listings [4]int
	for r := range listings {
		c := e.p2pClient()
		go func() {
			defer func() { errs <- nil }()
			for {
				select {
				case <-done:
					return
				default:
				}
				l, err := c.ListContainers(ctx)
				if err != nil {
					errs <- err
					return
				}
				listings[r]++
				for i, x := range l {
					if i > 0 && l[i-1].ID >= x.ID {
						errs <- fmt.Errorf("not sorted: %d then %d", l[i-1].ID, x.ID)
						return
					}
					if !strings.HasPrefix(x.Cgroup, e.cgBase+"/"+x.Name+"-") {
						errs <- fmt.Errorf("row %d named %q has cgroup %q", x.ID, x.Name, x.Cgroup)
						return
					}
					if x.Object != client.ContainerPath(x.ID) || !strings.HasPrefix(x.Cgroup, e.cgBase+"/w") {
						errs <- fmt.Errorf("row %+v", x)
						return
					}
				}
			}
		}()
	}
	tagger := e.p2pClient()
	for i, p := range paths {
		if _, err := tagger.TagCgroup(ctx, p, 0, client.TagOptions{Name: fmt.Sprintf("w%03d", i)}); err != nil {
			t.Fatal(err)
		}
		// Every fourth container exits: its cgroup is removed.
		if i%4 == 0 {
			if err := os.Remove(filepath.Join(e.cgRoot, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	for finished := 0; finished < len(listings); {
		if err := <-errs; err != nil {
			t.Error(err)
		} else {
			finished++
		}
	}
	l, err := tagger.ListContainers(ctx)
	if err != nil || len(l) != n {
		t.Fatalf("final listing: %d rows, %v", len(l), err)
	}
	exited := 0
	for _, x := range l {
		info, err := tagger.Container(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == "exited" {
			exited++
		}
	}
	t.Logf("listings during the tags: %v; %d of %d listed exited", listings, exited, n)
}
