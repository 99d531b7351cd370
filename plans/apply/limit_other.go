//go:build !unix

package apply

func openFileLimit() (uint64, bool) { return 0, false }
