package main

import (
	"context"
	"os"

	"github.com/provisionhq/provision/internal/session"
	"github.com/provisionhq/provision/plans"
)

// load checks the global flags, then loads the plan and opens its state,
// closed when ctx is done.
func load(ctx context.Context, path string, o *options) (*session.Session, error) {
	return loadWith(ctx, path, o, plans.Options{})
}

// loadWith is load with loader options.
func loadWith(ctx context.Context, path string, o *options, popts plans.Options) (*session.Session, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log, err := o.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	s, err := session.LoadWith(ctx, path, log, popts)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}
