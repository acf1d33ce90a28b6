//go:build !unix

package pubsubemu

import (
	"os"
	"os/exec"
)

// setProcessGroup is a no-op where process groups are not available.
func setProcessGroup(*exec.Cmd) {}

// killProcessGroup kills p (only p: no process groups here).
func killProcessGroup(p *os.Process, _ bool) { _ = p.Kill() }

// groupAlive reports false: without process groups there is nothing to poll.
func groupAlive(*os.Process) bool { return false }
