package awshttp

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

type clientFunc func(*http.Request) (*http.Response, error)

func (f clientFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// writerToBody is a request body like the SDK's: it has WriteTo.
type writerToBody struct{ *bytes.Reader }

func (writerToBody) Close() error { return nil }

// TestClientHidesWriteTo: net/http never sees the SDK body's WriteTo
// (whose io.EOF after close it takes for a failed write), reads the same
// bytes, and the caller's request is left as it was.
func TestClientHidesWriteTo(t *testing.T) {
	body := writerToBody{bytes.NewReader([]byte("Action=RunInstances"))}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://ec2.test/", body)
	if err != nil {
		t.Fatal(err)
	}
	var sent []byte
	g := Client(clientFunc(func(r *http.Request) (*http.Response, error) {
		if _, ok := r.Body.(io.WriterTo); ok {
			t.Error("the transport got a body with WriteTo")
		}
		sent, err = io.ReadAll(r.Body)
		return &http.Response{StatusCode: 200, Body: http.NoBody}, err
	}))
	if _, err := g.Do(req); err != nil {
		t.Fatal(err)
	}
	if string(sent) != "Action=RunInstances" {
		t.Errorf("sent %q", sent)
	}
	if _, ok := req.Body.(writerToBody); !ok {
		t.Errorf("the caller's request body was replaced: %T", req.Body)
	}
}
