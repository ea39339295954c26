package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/contid/contid"
)

// Change is one setting that differs between two configurations.
type Change struct {
	// Key is the setting as contid.conf spells it, with its section:
	// "[Manager] LogLevel".
	Key      string
	Old, New string
}

func (c Change) String() string {
	return fmt.Sprintf("%s=%s (was %s)", c.Key, c.New, c.Old)
}

// keyNames names each Config field as contid.conf does; fields and keys
// only differ where two sections share a key name.
var keyNames = map[string]string{
	"AutotagParents": "[Manager] AutotagParents",
	"AutotagScopes":  "[Manager] AutotagScopes",
	"MaxDepth":       "[Manager] MaxDepth",
	"MaxContainers":  "[Manager] MaxContainers",
	"StateDirectory": "[Manager] StateDirectory",
	"PinDirectory":   "[Manager] PinDirectory",
	"Socket":         "[Manager] Socket",
	"DockerSocket":   "[Manager] DockerSocket",
	"Mode":           "[Manager] Mode",
	"LogLevel":       "[Manager] LogLevel",

	"AuditSocket":     "[Audit] Socket",
	"BacklogWaitTime": "[Audit] BacklogWaitTime",
	"WriteUntagged":   "[Audit] WriteUntagged",
	"LoadRules":       "[Audit] LoadRules",
	"RulesFile":       "[Audit] RulesFile",
	"BacklogLimit":    "[Audit] BacklogLimit",
	"EnableAuditing":  "[Audit] EnableAuditing",

	"KeepExited": "[Registry] KeepExited",

	"AllowBPF":     "[Enforce] AllowBPF",
	"AllowModules": "[Enforce] AllowModules",

	"DenialRecordBurst": "[Enforce] DenialRecordBurst",
	"DenialRecordRate":  "[Enforce] DenialRecordRate",
}

// Changes lists the settings in which next differs from prev, in the
// order of the Config fields.
func Changes(prev, next Config) []Change {
	var out []Change
	pv, nv := reflect.ValueOf(prev), reflect.ValueOf(next)
	for i := 0; i < pv.NumField(); i++ {
		a, b := pv.Field(i).Interface(), nv.Field(i).Interface()
		if reflect.DeepEqual(a, b) {
			continue
		}
		name := pv.Type().Field(i).Name
		key, ok := keyNames[name]
		if !ok {
			key = name
		}
		out = append(out, Change{Key: key, Old: render(a), New: render(b)})
	}
	return out
}

// render writes a value the way contid.conf would.
func render(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, " ")
	case []contid.ScopePattern:
		var out []string
		for _, p := range v {
			out = append(out, p.String())
		}
		return strings.Join(out, " ")
	case bool:
		if v {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprint(v)
}
