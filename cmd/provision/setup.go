package main

import (
	"context"
	"os"

	"github.com/provisionhq/provision/internal/session"
)

// load checks the global flags, then loads the plan and opens its state,
// closed when ctx is done.
func load(ctx context.Context, path string, o *options) (*session.Session, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log, err := o.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	s, err := session.Load(ctx, path, log)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}
