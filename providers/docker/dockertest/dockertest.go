// Package dockertest gives tests the few local Docker operations they check
// or clean up with, through the same Engine API client the docker provider
// uses, so no test shells out to the docker CLI.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Client returns the process's shared client for the local daemon
// (DOCKER_HOST or the default socket); it does not contact the daemon.
var Client = sync.OnceValues(func() (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
})

// Available reports whether the daemon answers within 20s.
func Available(ctx context.Context) error {
	c, err := Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("docker daemon: %w", err)
	}
	return nil
}

// Require skips t when the daemon is unreachable, or fails it when
// PROVISION_REQUIRE_DOCKER is set (CI sets it), and returns the client.
func Require(t testing.TB) *client.Client {
	t.Helper()
	if err := Available(context.Background()); err != nil {
		if os.Getenv("PROVISION_REQUIRE_DOCKER") != "" {
			t.Fatalf("docker required (PROVISION_REQUIRE_DOCKER is set) but unreachable: %v", err)
		}
		t.Skipf("docker unreachable, skipping (set PROVISION_REQUIRE_DOCKER to fail instead): %v", err)
	}
	c, _ := Client()
	return c
}

// ExitError is a command run by Exec that exited non-zero.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Exec runs cmd in a running container, like `docker exec`, and returns its
// stdout and stderr interleaved; a non-zero exit is an *ExitError.
func Exec(ctx context.Context, container string, cmd ...string) ([]byte, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	created, err := c.ExecCreate(ctx, container, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", container, err)
	}
	att, err := c.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", container, err)
	}
	defer att.Close()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { // owned here: closing the connection on ctx ends it
		_, err := stdcopy.StdCopy(&out, &out, att.Reader)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		att.Close()
		<-done
		return out.Bytes(), ctx.Err()
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("exec in %s: read output: %w", container, err)
	}
	res, err := c.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return out.Bytes(), fmt.Errorf("exec in %s: %w", container, err)
	}
	if res.ExitCode != 0 {
		return out.Bytes(), &ExitError{Code: res.ExitCode}
	}
	return out.Bytes(), nil
}

// ContainerNames lists every container (running or not) carrying all the
// labels (each "key" or "key=value"), by name, sorted.
func ContainerNames(ctx context.Context, labels ...string) ([]string, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", labels...)})
	if err != nil {
		return nil, fmt.Errorf("list containers with %v: %w", labels, err)
	}
	var names []string
	for _, s := range res.Items {
		if len(s.Names) > 0 {
			names = append(names, strings.TrimPrefix(s.Names[0], "/"))
		}
	}
	slices.Sort(names)
	return names, nil
}

// RemoveContainers force-removes containers with their anonymous volumes,
// like `docker rm -f -v`; ones already gone are fine.
func RemoveContainers(ctx context.Context, containers ...string) error {
	c, err := Client()
	if err != nil {
		return err
	}
	for _, id := range containers {
		if _, err := c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	return nil
}

// Kill sends SIGKILL to a container, like `docker kill`.
func Kill(ctx context.Context, container string) error {
	c, err := Client()
	if err != nil {
		return err
	}
	if _, err := c.ContainerKill(ctx, container, client.ContainerKillOptions{}); err != nil {
		return fmt.Errorf("kill %s: %w", container, err)
	}
	return nil
}

// Restart restarts a container, like `docker restart`.
func Restart(ctx context.Context, container string) error {
	c, err := Client()
	if err != nil {
		return err
	}
	if _, err := c.ContainerRestart(ctx, container, client.ContainerRestartOptions{}); err != nil {
		return fmt.Errorf("restart %s: %w", container, err)
	}
	return nil
}

// ContainerIPs returns a container's addresses on all its networks.
func ContainerIPs(ctx context.Context, container string) ([]string, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.ContainerInspect(ctx, container, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", container, err)
	}
	var ips []string
	if ns := res.Container.NetworkSettings; ns != nil {
		for _, ep := range ns.Networks {
			if ep != nil && ep.IPAddress.IsValid() {
				ips = append(ips, ep.IPAddress.String())
			}
		}
	}
	slices.Sort(ips)
	return ips, nil
}

// Volume is a named volume mounted into a container.
type Volume struct {
	Name, Destination string
}

// ContainerVolumes returns the volumes mounted into a container.
func ContainerVolumes(ctx context.Context, container string) ([]Volume, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.ContainerInspect(ctx, container, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", container, err)
	}
	var vs []Volume
	for _, m := range res.Container.Mounts {
		if m.Type == mount.TypeVolume {
			vs = append(vs, Volume{Name: m.Name, Destination: m.Destination})
		}
	}
	return vs, nil
}

// Volumes lists the names of all volumes, like `docker volume ls -q`.
func Volumes(ctx context.Context) ([]string, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.VolumeList(ctx, client.VolumeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var names []string
	for _, v := range res.Items {
		names = append(names, v.Name)
	}
	slices.Sort(names)
	return names, nil
}

// Networks lists the IDs of the networks carrying label ("key" or
// "key=value").
func Networks(ctx context.Context, label string) ([]string, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("list networks with %s: %w", label, err)
	}
	var ids []string
	for _, n := range res.Items {
		ids = append(ids, n.ID)
	}
	return ids, nil
}

// RemoveNetworks removes networks by ID or name; ones already gone are fine.
func RemoveNetworks(ctx context.Context, networks ...string) error {
	c, err := Client()
	if err != nil {
		return err
	}
	for _, n := range networks {
		if _, err := c.NetworkRemove(ctx, n, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove network %s: %w", n, err)
		}
	}
	return nil
}

// RemoveLabelled removes every container (with its volumes) and then every
// network carrying label: a test cluster's cleanup.
func RemoveLabelled(ctx context.Context, label string) error {
	names, err := ContainerNames(ctx, label)
	if err != nil {
		return err
	}
	if err := RemoveContainers(ctx, names...); err != nil {
		return err
	}
	nets, err := Networks(ctx, label)
	if err != nil {
		return err
	}
	return RemoveNetworks(ctx, nets...)
}

// ReadFile copies one file out of a container (running or not), like
// `docker cp container:path -`, and returns its contents.
func ReadFile(ctx context.Context, container, path string) ([]byte, error) {
	c, err := Client()
	if err != nil {
		return nil, err
	}
	res, err := c.CopyFromContainer(ctx, container, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, fmt.Errorf("copy %s from %s: %w", path, container, err)
	}
	defer res.Content.Close()
	return untarFirst(res.Content)
}

func untarFirst(r io.Reader) ([]byte, error) {
	tr := tar.NewReader(r)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	return io.ReadAll(tr)
}
