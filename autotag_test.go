package contid

import "testing"

func TestParseScopePattern(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ScopePattern
		wantErr bool
	}{
		{in: "/system.slice/docker-*.scope", want: ScopePattern{"/system.slice", "docker-", ".scope"}},
		{in: "system.slice//docker-*.scope", want: ScopePattern{"/system.slice", "docker-", ".scope"}},
		{in: "/crio-*", want: ScopePattern{"/", "crio-", ""}},
		{in: "/system.slice/*.scope", want: ScopePattern{"/system.slice", "", ".scope"}},
		{in: "/system.slice/docker.scope", wantErr: true},
		{in: "/system.slice/*", wantErr: true},
		{in: "/system.slice/a*b*c", wantErr: true},
		{in: "/sys*/docker-*.scope", wantErr: true},
		{in: "/system.slice/docker-*.slice", wantErr: true},
		{in: "/s/" + string(make([]byte, MaxScopePrefix+1)) + "*", wantErr: true},
	} {
		got, err := ParseScopePattern(tc.in)
		if (err != nil) != tc.wantErr || err == nil && got != tc.want {
			t.Errorf("ParseScopePattern(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestScopePatternMatches(t *testing.T) {
	p, err := ParseScopePattern("/system.slice/docker-*.scope")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cgroup string
		want   bool
	}{
		{"/system.slice/docker-0123abcd.scope", true},
		{"/system.slice/docker-.scope", false},
		{"/system.slice/docker.service", false},
		{"/system.slice/docker-1.scope/init", false},
		{"/machine.slice/docker-1.scope", false},
		{"/system.slice/sub/docker-1.scope", false},
	} {
		if got := p.Matches(tc.cgroup); got != tc.want {
			t.Errorf("%s matches %s: %v, want %v", p, tc.cgroup, got, tc.want)
		}
	}
}
