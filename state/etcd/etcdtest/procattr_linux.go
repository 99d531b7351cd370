package etcdtest

import "syscall"

// procAttr has the kernel kill etcd if the test binary dies without
// cleaning up (a timeout panic, SIGKILL), so no server is left behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
