//go:build !unix

package postgres

import (
	"os"
	"os/exec"
)

// setSysProcAttr does nothing: there is no root to avoid here.
func setSysProcAttr(*exec.Cmd, *ids) {}

// signalFastShutdown kills p: there are no signals to ask politely with.
func signalFastShutdown(p *os.Process) error { return p.Kill() }

// processAlive reports true, so stale directories are never swept here.
func processAlive(int) bool { return true }

// owner reports that the owner is unknown.
func owner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }
