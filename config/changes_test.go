package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Every field has its contid.conf name, so a reload names what changed
// as the administrator wrote it.
func TestEveryFieldHasAKeyName(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	for i := 0; i < typ.NumField(); i++ {
		if _, ok := keyNames[typ.Field(i).Name]; !ok {
			t.Errorf("field %s has no entry in keyNames", typ.Field(i).Name)
		}
	}
}

func TestChanges(t *testing.T) {
	prev := Default()
	next := prev
	next.LogLevel = "debug"
	next.AutotagParents = []string{"/a", "/b"}
	next.WriteUntagged = true
	got := Changes(prev, next)
	want := []Change{
		{"[Manager] AutotagParents", "/machine.slice", "/a /b"},
		{"[Manager] LogLevel", "info", "debug"},
		{"[Audit] WriteUntagged", "no", "yes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Changes = %v, want %v", got, want)
	}
	if c := Changes(prev, Default()); len(c) != 0 {
		t.Fatalf("equal configurations differ in %v", c)
	}
}

// Drop-ins are read after the main file in lexical order, the later
// winning; only *.conf files count, and the whole is validated once, so
// a drop-in can correct the main file.
func TestLoadDropIns(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "contid.conf")
	dropins := DropInDir(main)
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(main, "[Manager]\nLogLevel=loud\nMaxDepth=3\n")
	write(filepath.Join(dropins, "20-level.conf"), "[Manager]\nLogLevel=notice\n")
	write(filepath.Join(dropins, "10-level.conf"), "[Manager]\nLogLevel=debug\nMaxContainers=7\n")
	write(filepath.Join(dropins, "30-ignored.conf.disabled"), "[Manager]\nLogLevel=err\n")

	files, err := Files(main)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{main, filepath.Join(dropins, "10-level.conf"), filepath.Join(dropins, "20-level.conf")}; !reflect.DeepEqual(files, want) {
		t.Fatalf("Files = %v, want %v", files, want)
	}
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	if c.LogLevel != "notice" || c.MaxDepth != 3 || c.MaxContainers != 7 {
		t.Fatalf("LogLevel=%s MaxDepth=%d MaxContainers=%d, want notice 3 7", c.LogLevel, c.MaxDepth, c.MaxContainers)
	}

	write(filepath.Join(dropins, "40-bad.conf"), "[Manager]\nMaxDepth=0\n")
	if _, err := Load(main); err == nil {
		t.Fatal("a drop-in with MaxDepth=0 was accepted")
	}
	// Without the main file the drop-ins still count.
	if err := os.Remove(main); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dropins, "40-bad.conf")); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(main); err != nil || c.LogLevel != "notice" {
		t.Fatalf("drop-ins alone: LogLevel=%q, %v", c.LogLevel, err)
	}
}
