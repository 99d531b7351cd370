package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/providers"
)

// ErrDaemonUnreachable means the Docker Engine API could not be reached.
var ErrDaemonUnreachable = errors.New("docker daemon not reachable (start dockerd, e.g. `nohup dockerd >/tmp/dockerd.log 2>&1 &`)")

// callTimeout bounds one Engine API call that has no earlier deadline, so a
// wedged daemon cannot hang an apply forever.
const callTimeout = 2 * time.Minute

// engine is the part of the Docker Engine API the provider calls;
// *client.Client implements it, unit tests swap in a fake.
type engine interface {
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerRestart(ctx context.Context, id string, options client.ContainerRestartOptions) (client.ContainerRestartResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerLogs(ctx context.Context, id string, options client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	CopyFromContainer(ctx context.Context, id string, options client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	CopyToContainer(ctx context.Context, id string, options client.CopyToContainerOptions) (client.CopyToContainerResult, error)
	NetworkList(ctx context.Context, options client.NetworkListOptions) (client.NetworkListResult, error)
	NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkRemove(ctx context.Context, id string, options client.NetworkRemoveOptions) (client.NetworkRemoveResult, error)
	ImageInspect(ctx context.Context, ref string, options ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageImport(ctx context.Context, source client.ImageImportSource, ref string, options client.ImageImportOptions) (client.ImageImportResult, error)
}

var _ engine = (*client.Client)(nil)

// NewClient returns an Engine API client configured like the docker CLI:
// DOCKER_HOST (default the local socket), DOCKER_API_VERSION and
// DOCKER_CERT_PATH/DOCKER_TLS_VERIFY, negotiating the API version with the
// daemon on first use (the client default). It does not contact the daemon.
func NewClient() (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// withDeadline gives ctx callTimeout when it has no deadline of its own.
func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, callTimeout)
}

// classify wraps an Engine API failure in the kind the engine acts on.
func classify(err error, pool string) error {
	switch {
	case err == nil:
		return nil
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w: %w", ErrDaemonUnreachable, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	case cerrdefs.IsInvalidArgument(err):
		// A bad image reference, a memory limit below the minimum, more
		// CPUs than the host has: the daemon rejects the spec itself.
		return &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "docker", Pool: pool, Message: err.Error()}
	}
	return err
}
