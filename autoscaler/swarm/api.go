package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// APIVersion is the Engine API version the source speaks: Docker 20.10's
	// (Debian 12's docker.io). Every field read here is unchanged in later
	// versions, so against an engine that no longer accepts 1.41 (Docker 29
	// requires 1.44) the source uses the engine's minimum instead.
	APIVersion = "1.41"
	// requestTimeout bounds one non-streaming request, so a manager that
	// accepts connections but never answers (a stuck raft leader) cannot
	// stall a Snapshot when the caller's ctx has no deadline.
	requestTimeout = 30 * time.Second
	// maxErrorBody is how much of an error response is read for its message.
	maxErrorBody = 64 << 10
)

// engine is a minimal Engine API client over one dial function. Its HTTP
// host is a placeholder: the dial function decides where requests go.
type engine struct {
	http   *http.Client
	pinned string // Options.APIVersion; negotiation is skipped when set

	mu      sync.Mutex
	version string // negotiated; "" until the first /version succeeds
}

func newEngine(dial func(ctx context.Context) (net.Conn, error), pinned string) *engine {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		// Over SSH every connection is a channel on one session: cheap,
		// but keep a couple warm for the poll and Snapshot.
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &engine{http: &http.Client{Transport: tr}, pinned: strings.TrimPrefix(pinned, "v")}
}

// filters encodes Engine API list filters the way the docker CLI does
// ({"key":{"value":true}}), which every engine since 1.24 accepts.
func filters(kv ...string) url.Values {
	f := map[string]map[string]bool{}
	for i := 0; i+1 < len(kv); i += 2 {
		if f[kv[i]] == nil {
			f[kv[i]] = map[string]bool{}
		}
		f[kv[i]][kv[i+1]] = true
	}
	b, _ := json.Marshal(f) // maps of strings always marshal
	return url.Values{"filters": {string(b)}}
}

// get decodes the JSON answer of GET path (unversioned, e.g. "/tasks") into out.
func (e *engine) get(ctx context.Context, path string, q url.Values, out any) error {
	return e.call(ctx, http.MethodGet, path, q, nil, out)
}

// post sends body as JSON and discards the answer.
func (e *engine) post(ctx context.Context, path string, q url.Values, body []byte) error {
	return e.call(ctx, http.MethodPost, path, q, body, nil)
}

func (e *engine) call(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, vpath, err := e.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, vpath, err)
	}
	return nil
}

// stream opens GET path and returns the open body, for /events.
func (e *engine) stream(ctx context.Context, path string, q url.Values) (io.ReadCloser, error) {
	resp, _, err := e.send(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send makes one versioned request and turns a non-2xx answer into an
// *APIError. It returns the path as sent, for messages.
func (e *engine) send(ctx context.Context, method, path string, q url.Values, body []byte) (*http.Response, string, error) {
	v, err := e.apiVersion(ctx)
	if err != nil {
		return nil, path, err
	}
	vpath := "/v" + v + path
	resp, err := e.do(ctx, method, vpath, q, body)
	if err != nil {
		return nil, vpath, err
	}
	return resp, vpath, nil
}

func (e *engine) do(ctx context.Context, method, path string, q url.Values, body []byte) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: q.Encode()}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		// *url.Error repeats the placeholder URL; the cause is what helps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var m struct{ Message string }
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return nil, &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: msg}
}

// apiVersion is the version every request is sent with: the pinned one, or
// APIVersion when the engine accepts it, else the engine's minimum. It asks
// the engine once (GET /version needs no version) and remembers the answer;
// a failure is not remembered, so the next request asks again.
func (e *engine) apiVersion(ctx context.Context) (string, error) {
	if e.pinned != "" {
		return e.pinned, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.version != "" {
		return e.version, nil
	}
	resp, err := e.do(ctx, http.MethodGet, "/version", nil, nil)
	if err != nil {
		return "", fmt.Errorf("engine API version: %w", err)
	}
	defer resp.Body.Close()
	var ver struct {
		APIVersion    string `json:"ApiVersion"`
		MinAPIVersion string
	}
	if err := json.NewDecoder(resp.Body).Decode(&ver); err != nil {
		return "", fmt.Errorf("engine API version: decode GET /version: %w", err)
	}
	v, err := negotiate(ver.APIVersion, ver.MinAPIVersion)
	if err != nil {
		return "", fmt.Errorf("engine API version: %w", err)
	}
	e.version = v
	return v, nil
}

// negotiate picks APIVersion when the engine's range [lo, hi] holds it.
func negotiate(hi, lo string) (string, error) {
	want, _ := parseVersion(APIVersion)
	top, ok := parseVersion(hi)
	if !ok {
		return "", fmt.Errorf("engine reports API version %q", hi)
	}
	if top.less(want) {
		return "", fmt.Errorf("engine speaks API %s, older than %s (Docker 20.10); upgrade the manager's engine", hi, APIVersion)
	}
	if floor, ok := parseVersion(lo); ok && want.less(floor) {
		return lo, nil
	}
	return APIVersion, nil
}

type version struct{ major, minor int }

func (a version) less(b version) bool {
	return a.major < b.major || (a.major == b.major && a.minor < b.minor)
}

func parseVersion(s string) (version, bool) {
	major, minor, ok := strings.Cut(s, ".")
	if !ok {
		return version{}, false
	}
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(minor)
	return version{a, b}, err1 == nil && err2 == nil
}

func (e *engine) close() { e.http.CloseIdleConnections() }
