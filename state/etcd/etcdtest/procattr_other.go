//go:build !linux

package etcdtest

import "syscall"

// procAttr: only Linux can tie etcd's life to the test binary's; elsewhere
// a crashed test run may leave etcd running.
func procAttr() *syscall.SysProcAttr { return nil }
