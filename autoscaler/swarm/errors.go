package swarm

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// APIError is a non-2xx answer of the Engine API, with the engine's own
// reason (the body's "message"). A worker or a stopped swarm answers 503
// "This node is not a swarm manager…", which errors.As lets a caller tell
// apart from a transport failure.
type APIError struct {
	Method     string
	Path       string // as requested, with the API version: /v1.41/tasks
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: engine API %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// outOfSequence reports a node update that lost a race with another writer
// (the version it was based on is stale). Swarm says so only in the message
// text ("update out of sequence", code Unknown → HTTP 500), so the text is
// all there is to match.
func outOfSequence(err error) bool {
	var e *APIError
	return errors.As(err, &e) && strings.Contains(e.Message, "update out of sequence")
}
