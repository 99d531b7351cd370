package main

import (
	"os"

	"github.com/provisionhq/provision/internal/session"
)

// load checks the global flags, then loads the plan and its state.
func load(path string, o *options) (*session.Session, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log, err := o.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	return session.Load(path, log)
}
