//go:build race

package dbus_test

// Under -race the daemon binary is built with the race detector too, so
// the integration tests check contidd itself, not only the test process.
func init() {
	buildFlags = append(buildFlags, "-race")
	raceBuild = true
}
