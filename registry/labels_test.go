package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/contid/contid"
)

func TestValidateLabels(t *testing.T) {
	tests := []struct {
		what     string
		validate func(string) error
		in       string
		ok       bool
	}{
		{"manager", ValidateManager, "", true},
		{"manager", ValidateManager, "podman", true},
		{"manager", ValidateManager, "libvirt-lxc", true},
		{"manager", ValidateManager, "org.example_mgr-2", true},
		{"manager", ValidateManager, strings.Repeat("m", 64), true},
		{"manager", ValidateManager, strings.Repeat("m", 65), false},
		{"manager", ValidateManager, "pod man", false},
		{"manager", ValidateManager, "pod/man", false},
		{"manager", ValidateManager, "podmän", false},
		{"manager", ValidateManager, "a\nb", false},
		{"image", ValidateImage, "", true},
		{"image", ValidateImage, "docker.io/library/nginx:1.27@sha256:" + strings.Repeat("0", 64), true},
		{"image", ValidateImage, "/var/tmp/rootfs dir", true},
		{"image", ValidateImage, strings.Repeat("i", 1024), true},
		{"image", ValidateImage, strings.Repeat("i", 1025), false},
		{"image", ValidateImage, "nginx\x1b[2J", false},
		{"image", ValidateImage, "\xff", false},
		{"manager ID", ValidateManagerID, "", true},
		{"manager ID", ValidateManagerID, strings.Repeat("a1", 32), true},
		{"manager ID", ValidateManagerID, strings.Repeat("x", 255), true},
		{"manager ID", ValidateManagerID, strings.Repeat("x", 256), false},
		{"manager ID", ValidateManagerID, "id\u200b", false},
	}
	for _, tt := range tests {
		err := tt.validate(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%s %q: %v, want ok=%v", tt.what, Truncate(tt.in), err, tt.ok)
		}
		if err != nil && (!errors.Is(err, contid.ErrInvalidArgs) || !strings.Contains(err.Error(), tt.what)) {
			t.Errorf("%s %q: error %q does not wrap InvalidArgs or name the %s", tt.what, Truncate(tt.in), err, tt.what)
		}
	}
}

// A tag request with a label contidd would refuse changes nothing.
func TestTagRefusesBadLabels(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"manager", Options{Manager: "has space"}},
		{"image", Options{Image: strings.Repeat("i", 1025)}},
		{"manager ID", Options{ManagerID: "a\tb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.checkpoint()
			_, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/x.scope"), tt.o)
			wantErr(t, err, contid.ErrInvalidArgs)
			if h.k.tagged != h.kernelTags || len(h.r.List()) != h.records {
				t.Fatal("a refused tag reached the kernel or the records")
			}
		})
	}
}

// Manager, image and manager ID are kept in the record and read back
// after a restart, for containers tagged by their owner and for those the
// kernel autotagged and a manager named.
func TestLabelsSurviveReopen(t *testing.T) {
	h := newHarness(t, Config{})
	owned := h.mustTag(orchestrator, 0, "/machine.slice/owned.scope", Options{Name: "db", Manager: "api", Image: "postgres:16", ManagerID: "c0ffee"})
	if _, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{700}, Flags: contid.FlagAutotag}, Cgroup{Path: "/machine.slice/libpod-ab.scope", ID: 4242}); err != nil {
		t.Fatal(err)
	}
	named, err := h.r.Name(orchestrator, 700, Options{Name: "pweb", Manager: "podman", ManagerID: "ab"}, "libpod-ab.scope")
	if err != nil {
		t.Fatal(err)
	}
	if named.Name != "pweb" || named.Manager != "podman" || named.ManagerID != "ab" || named.Image != "" || named.Unit != "libpod-ab.scope" {
		t.Fatalf("after Name: %+v", named)
	}
	h.reopen()
	for _, want := range []Container{
		{ID: owned.ID, Name: "db", Manager: "api", Image: "postgres:16", ManagerID: "c0ffee"},
		{ID: 700, Name: "pweb", Manager: "podman", ManagerID: "ab", Unit: "libpod-ab.scope"},
	} {
		got, err := h.r.Get(want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != want.Name || got.Manager != want.Manager || got.Image != want.Image || got.ManagerID != want.ManagerID || (want.Unit != "" && got.Unit != want.Unit) {
			t.Fatalf("container %d after reopen: %+v, want %+v", want.ID, got, want)
		}
	}
}

// Each label, once given, stays: the same value or none is fine, another
// is AlreadyTagged and changes nothing; a missing one may still be added.
func TestNameLabelsAreWriteOnce(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"same again", Options{Name: "pweb", Manager: "podman"}, nil},
		{"nothing", Options{}, nil},
		{"image added", Options{Image: "busybox"}, nil},
		{"other name", Options{Name: "evil"}, contid.ErrAlreadyTagged},
		{"other manager", Options{Manager: "nspawn"}, contid.ErrAlreadyTagged},
		{"other manager ID", Options{ManagerID: "ff"}, contid.ErrAlreadyTagged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			if _, _, err := h.r.Adopt(contid.Tag{Chain: contid.Chain{700}, Flags: contid.FlagAutotag}, Cgroup{Path: "/machine.slice/libpod-ab.scope", ID: 4242}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.r.Name(orchestrator, 700, Options{Name: "pweb", Manager: "podman", ManagerID: "ab"}, ""); err != nil {
				t.Fatal(err)
			}
			before, _ := h.r.Get(700)
			_, err := h.r.Name(orchestrator, 700, tt.o, "")
			wantErr(t, err, tt.want)
			after, _ := h.r.Get(700)
			want := *before
			if tt.want == nil && tt.o.Image != "" {
				want.Image = tt.o.Image
			}
			if after.Name != want.Name || after.Manager != want.Manager || after.ManagerID != want.ManagerID || after.Image != want.Image {
				t.Fatalf("record %+v, want %+v", after, want)
			}
		})
	}
}
