//go:build linux

package postgres

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel send the server SIGINT (a fast
// shutdown) when the thread that started it dies, so a panicking or killed
// test binary leaves no server behind. Go sets the signal after switching
// credentials, which would otherwise clear it. (Go never ends the threads of
// the runtime on its own, so in practice this means when the process dies.)
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
}
