package bootstrap

import (
	"context"
	"fmt"
	"net"
)

// DialUnix connects to the unix socket at path on the machine, through this
// SSH connection (a direct-streamlocal@openssh.com channel, what
// `ssh -L 2375:/var/run/docker.sock` opens). It lets a workstation speak to a
// manager's Docker Engine API without exposing it on TCP. The socket is
// opened by sshd as the login user, so for /var/run/docker.sock that user
// must be root or in the docker group (sudo does not apply here), and the
// server must allow it (OpenSSH's AllowStreamLocalForwarding, on by
// default). The connection has no deadlines (SSH channels do not support
// them): bound its use with ctx on the requests made over it. It ends when
// it or the Client is closed. A connection that is gone fails it with
// cluster.ErrConnectionLost.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.conn.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() == nil {
			err = c.broken(err)
		}
		return nil, fmt.Errorf("%s: dial unix socket %s over ssh: %w", c.name, path, err)
	}
	return conn, nil
}

// DialTCP connects to addr (host:port) as seen from the machine, through
// this SSH connection (a direct-tcpip channel, what `ssh -L` opens): a
// manager's API server on its loopback, say. Same caveats as DialUnix.
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.conn.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			err = c.broken(err)
		}
		return nil, fmt.Errorf("%s: dial %s over ssh: %w", c.name, addr, err)
	}
	return conn, nil
}
