//go:build !linux

package postgres

import "os/exec"

// setParentDeathSignal does nothing: only Linux has a parent-death signal.
// Elsewhere a server outlives a test binary that dies without calling Stop.
func setParentDeathSignal(*exec.Cmd) {}
