package autoscaler

import "errors"

// ErrUnknownExpander: the plan names an expander that does not exist.
var ErrUnknownExpander = errors.New("unknown expander")
