package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/contid/contid"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		check   func(Config) bool
		wantErr bool
	}{
		{"empty is defaults", "", func(c Config) bool { return reflect.DeepEqual(c, Default()) }, false},
		{"parents normalised", "[Manager]\nAutotagParents=machine.slice /foo//bar/\n",
			func(c Config) bool {
				return reflect.DeepEqual(c.AutotagParents, []string{"/machine.slice", "/foo/bar"})
			}, false},
		{"empty parents", "[Manager]\nAutotagParents=\n", func(c Config) bool { return len(c.AutotagParents) == 0 }, false},
		{"docker scopes by default", "", func(c Config) bool {
			return len(c.AutotagScopes) == 1 && c.AutotagScopes[0].Matches("/system.slice/docker-0a1b.scope")
		}, false},
		{"scopes", "[Manager]\nAutotagScopes=/system.slice/docker-*.scope system.slice//crio-*.scope\n", func(c Config) bool {
			return len(c.AutotagScopes) == 2 && c.AutotagScopes[1] == contid.ScopePattern{Parent: "/system.slice", Prefix: "crio-", Suffix: ".scope"}
		}, false},
		{"no scopes", "[Manager]\nAutotagScopes=\n", func(c Config) bool { return len(c.AutotagScopes) == 0 }, false},
		{"bad scope", "[Manager]\nAutotagScopes=/system.slice/*\n", nil, true},
		{"numbers", "[Manager]\nMaxDepth=3\nMaxContainers=10\n", func(c Config) bool { return c.MaxDepth == 3 && c.MaxContainers == 10 }, false},
		{"audit bools", "[Audit]\nWriteUntagged=yes\nLoadRules=off\nBacklogLimit=100\n",
			func(c Config) bool { return c.WriteUntagged && !c.LoadRules && c.BacklogLimit == 100 }, false},
		{"auditing left alone", "[Audit]\nEnableAuditing=no\n", func(c Config) bool { return !c.EnableAuditing }, false},
		{"auditing switched on by default", "[Audit]\n", func(c Config) bool { return c.EnableAuditing }, false},
		{"bad auditing bool", "[Audit]\nEnableAuditing=perhaps\n", nil, true},
		{"comments", "# c\n; c\n[Manager]\n  Mode = tracking \n", func(c Config) bool { return c.Mode == ModeTracking }, false},
		{"keep exited", "[Registry]\nKeepExited=500\n", func(c Config) bool { return c.KeepExited == 500 }, false},
		{"keep exited zero", "[Registry]\nKeepExited=0\n", nil, true},
		{"enforce defaults refuse loads", "[Enforce]\n", func(c Config) bool { return !c.AllowBPF && !c.AllowModules }, false},
		{"enforce allow bpf", "[Enforce]\nAllowBPF=yes\n", func(c Config) bool { return c.AllowBPF && !c.AllowModules }, false},
		{"enforce allow modules", "[Enforce]\nAllowModules=true\n", func(c Config) bool { return !c.AllowBPF && c.AllowModules }, false},
		{"enforce bad bool", "[Enforce]\nAllowBPF=sometimes\n", nil, true},
		{"denial budget default", "", func(c Config) bool { return c.DenialRecordBurst == 64 && c.DenialRecordRate == 64 }, false},
		{"denial budget set", "[Enforce]\nDenialRecordBurst=10\nDenialRecordRate=2\n", func(c Config) bool { return c.DenialRecordBurst == 10 && c.DenialRecordRate == 2 }, false},
		{"denial budget off", "[Enforce]\nDenialRecordBurst=0\n", func(c Config) bool { return c.DenialRecordBurst == 0 }, false},
		{"denial burst at most", "[Enforce]\nDenialRecordBurst=4096\n", func(c Config) bool { return c.DenialRecordBurst == 4096 }, false},
		{"denial burst too big", "[Enforce]\nDenialRecordBurst=4097\n", nil, true},
		{"denial rate too big", "[Enforce]\nDenialRecordRate=100000\n", nil, true},
		{"denial rate negative", "[Enforce]\nDenialRecordRate=-1\n", nil, true},
		{"denial rate not a number", "[Enforce]\nDenialRecordRate=64/s\n", nil, true},
		{"enforce unknown key", "[Enforce]\nAllowKexec=yes\n", nil, true},
		{"unknown key", "[Manager]\nFoo=1\n", nil, true},
		{"unknown section", "[Bogus]\n", nil, true},
		{"key outside section", "Mode=auto\n", nil, true},
		{"no equals", "[Manager]\nMode\n", nil, true},
		{"depth too big", "[Manager]\nMaxDepth=9\n", nil, true},
		{"depth zero", "[Manager]\nMaxDepth=0\n", nil, true},
		{"bad mode", "[Manager]\nMode=enforcing-ish\n", nil, true},
		{"bad bool", "[Audit]\nLoadRules=maybe\n", nil, true},
		{"relative state dir", "[Manager]\nStateDirectory=var/lib\n", nil, true},
		{"bad log level", "[Manager]\nLogLevel=loud\n", nil, true},
		{"unterminated section", "[Manager\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.in), "test.conf")
			if tt.wantErr {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("want ErrSyntax, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

// The shipped units/contid.conf documents every key with its default; parsing
// it with the comment markers removed must give exactly the defaults, so the
// documentation cannot drift from the code.
func TestShippedConfigDocumentsDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "units", "contid.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var uncommented strings.Builder
	keys := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") && strings.Contains(line, "=") && !strings.HasPrefix(line, "# ") {
			line = strings.TrimPrefix(line, "#")
			keys++
		}
		uncommented.WriteString(line + "\n")
	}
	c, err := Parse(strings.NewReader(uncommented.String()), "contid.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("documented defaults differ from code:\n doc  %+v\n code %+v", c, Default())
	}
	if want := reflect.TypeOf(Config{}).NumField(); keys != want {
		t.Fatalf("units/contid.conf documents %d keys, Config has %d", keys, want)
	}
}
