package aws

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/provisionhq/provision/providers"
)

// NewWithHTTPClient is New with every EC2 request sent through c instead
// of the SDK's own HTTP client; the rest comes from the standard chain as
// in New. It is for an emulator served in the same process, such as
// internal/scalebench's cloudsim EC2 running in virtual time, where a real
// socket would stop the clock.
func NewWithHTTPClient(ctx context.Context, env providers.Env, c aws.HTTPClient) (*Provider, error) {
	return newProvider(ctx, env, config.WithHTTPClient(c))
}
