//go:build unix

package postgres

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setSysProcAttr makes cmd run as the user c (when not nil).
func setSysProcAttr(cmd *exec.Cmd, c *ids) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if c != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}
	}
}

// signalFastShutdown asks the postmaster for a fast shutdown (SIGINT): it
// ends open sessions, rolls their transactions back and exits cleanly.
func signalFastShutdown(p *os.Process) error { return p.Signal(syscall.SIGINT) }

// processAlive reports whether process pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// owner returns the numeric owner of fi.
func owner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
