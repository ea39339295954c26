package dbus_test

import (
	"fmt"
	"strings"
	"testing"
)

// Managers allow names of digits only (`docker run --name 42`), so a
// number on contidctl's command line may be an ID or a name: it is the
// ID when a container has it, the name when only a name matches, and an
// error naming both when they are different containers.
func TestContidctlNumericNames(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	bus := "--address=" + e.busAddr
	n := 0
	tag := func(name string) string {
		t.Helper()
		n++
		cg := e.cgroup(fmt.Sprintf("num-%d", n))
		e.startIn(cg, nil, "sleep", "1000")
		out, errOut, code := ctl(t, nil, nil, bus, "tag-cgroup", "--name", name, cg)
		if code != 0 {
			t.Fatalf("tag-cgroup --name %s: exit %d: %s", name, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	first := tag("first")
	// A name that is another container's ID, and one that is nobody's.
	clash := tag(first)
	alone := tag("987654")
	// Two managers may each run a "web": both are recorded, each under
	// its own ID, and the name alone picks neither.
	web1, web2 := tag("web"), tag("web")

	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"an ID also a name", []string{bus, "show", first}, 2, fmt.Sprintf("both container %s's ID and the name of container %s", first, clash)},
		{"a name of digits only", []string{bus, "show", "987654"}, 0, "Id=" + alone + "\n"},
		{"an ID no name matches", []string{bus, "show", clash}, 0, "Id=" + clash + "\n"},
		{"a number nobody has", []string{bus, "show", "4242424"}, 4, "no container"},
		{"a name two running containers have", []string{bus, "show", "web"}, 2, fmt.Sprintf("2 running containers are named \"web\": %s (manager api), %s (manager api)", web1, web2)},
		{"one of them by its ID", []string{bus, "show", web2}, 0, "Id=" + web2 + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ctl(t, nil, nil, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.contains) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant text %q", code, tt.code, out, errOut, tt.contains)
			}
		})
	}
}
