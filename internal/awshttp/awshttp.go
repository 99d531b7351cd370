// Package awshttp holds the HTTP client every AWS SDK client here uses,
// the SDK's own with one net/http race removed.
package awshttp

import (
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Client is next (the SDK's default client when nil) with one race removed. The SDK closes
// a request's body as soon as the response arrives, and its closed body
// answers WriteTo with io.EOF. net/http, after sending Content-Length bytes,
// drains the body once more (through WriteTo when the body has one) and
// takes that io.EOF for a failed write: it closes the connection under the
// response being read, the SDK sees "use of closed network connection" and
// sends the request again (a second RunInstances, harmless with its client
// token but a wasted call and a flaky count). A fast server (cloudsim on
// loopback) answers before the drain and hits it often. Hiding WriteTo
// leaves net/http with Read, whose io.EOF after close is a clean end.
func Client(next aws.HTTPClient) aws.HTTPClient {
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	return bodyGuard{next: next}
}

type bodyGuard struct{ next aws.HTTPClient }

// readOnlyBody is a request body with Read and Close only.
type readOnlyBody struct{ io.ReadCloser }

func (g bodyGuard) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		if _, ok := r.Body.(io.WriterTo); ok {
			r = r.Clone(r.Context())
			r.Body = readOnlyBody{r.Body}
		}
	}
	return g.next.Do(r)
}
