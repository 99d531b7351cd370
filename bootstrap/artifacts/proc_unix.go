//go:build unix

package artifacts

import (
	"os/exec"
	"syscall"
)

// killProcessGroup makes cancelling cmd kill its whole process group: go
// build's compilers and linker are children that killing go alone leaves
// running for minutes.
func killProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
