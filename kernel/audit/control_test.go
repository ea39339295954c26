package audit

import "testing"

// TestHasKey: the exemption's rules are found by their key exactly, so an
// administrator's rule whose key only begins the same stays.
func TestHasKey(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"-a never,exit -S all -F pid=1 -F key=contid-self", true},
		{"-a never,exit -S all -F key=contid-self -F pid=1", true},
		{"-w /etc -p wa -k contid-self", true},
		{"-a always,exit -S bpf -F auid=4242 -F key=contid-selfie", false},
		{"-a always,exit -S bpf -F key=contid-selfie -F key=contid-self", true},
		{"-a always,exit -S bpf -F key=my-contid-self", false},
		{"-a always,exit -S bpf", false},
	} {
		if got := hasKey(tc.line, selfRuleKey); got != tc.want {
			t.Errorf("hasKey(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
