package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// HostKeyRotator gives a machine a host key of its own over a verified
// session (bootstrap.Rotator; its doc says why the key is made on the
// machine). The engine calls it right after the first verified connection
// and records state between the steps; every step is idempotent.
type HostKeyRotator interface {
	// Stage makes the next host key on the machine, not served yet, and
	// returns its public half (authorized_keys format).
	Stage(ctx context.Context, r cluster.Runner) (next string, err error)
	// Install puts the staged key next in place of the served one.
	// installed is false, with no error, when the machine holds no such
	// key, neither staged nor in place: the engine stages again.
	Install(ctx context.Context, r cluster.Runner, next string) (installed bool, err error)
	// Reload makes the machine's sshd serve the installed key.
	Reload(ctx context.Context, r cluster.Runner) error
	// Scrub removes what is left of the old key on the machine, and the
	// copies of the user-data that carried it.
	Scrub(ctx context.Context, r cluster.Runner) error
}

// maxFormerHostKeys bounds a machine's FormerHostKeys: one per interrupted
// create, and a machine is not re-created forever.
const maxFormerHostKeys = 4

// rotates reports whether m's host key is to be rotated now: the engine
// has a rotator, m's key is not rotated yet, and m's provider hands its
// machines the keys provision makes (not a providers.HostKeyKeeper).
func (r *run) rotates(ctx context.Context, m state.Machine) (bool, error) {
	if r.e.HostKeyRotator == nil || m.HostKeyRotated {
		return false, nil
	}
	p, err := r.provider(ctx, m.Provider)
	if err != nil {
		return false, err
	}
	if k, ok := p.(providers.HostKeyKeeper); ok && k.KeepsHostKeys() {
		return false, nil
	}
	return true, nil
}

// rotateHostKey gives machine id a fresh host key over conn, a verified
// session, and returns a new session, verified against the new key alone.
// conn stays open: sessions made with the old key outlive the rotation.
//
// The order is what makes a kill at any instant safe: the next key is in
// state (NextHostKey) before the machine serves it, and the rotation is
// confirmed (HostKey = next, NextHostKey cleared) only once the machine
// serves it and the old key's copies are gone. In between, the machine
// offers HostKey or NextHostKey, and the Connector accepts exactly those
// two, so the next run connects and finishes here (every step is
// idempotent).
func (r *run) rotateHostKey(ctx context.Context, id string, conn Conn) (Conn, error) {
	rot := r.e.HostKeyRotator
	m := r.machine(id)
	next := m.NextHostKey
	if next != "" {
		r.log.Info("finishing an interrupted host key rotation", "machine", id)
	}
	for attempt := 0; ; attempt++ {
		if next == "" {
			n, err := rot.Stage(ctx, conn)
			if err != nil {
				return nil, err
			}
			if err := r.update(ctx, id, func(m *state.Machine) { m.NextHostKey = n }); err != nil {
				return nil, err
			}
			next = n
			r.log.Info("host key rotation: next key staged on the machine and recorded", "machine", id)
		}
		installed, err := rot.Install(ctx, conn, next)
		if err != nil {
			return nil, err
		}
		if installed {
			break
		}
		if attempt > 0 {
			return nil, errors.New("rotate host key: the key staged on the machine vanished twice")
		}
		r.log.Warn("the machine no longer holds the host key being rotated in; staging another", "machine", id)
		next = ""
	}
	r.log.Info("host key rotation: next key installed", "machine", id)
	if err := rot.Reload(ctx, conn); err != nil {
		return nil, err
	}
	r.log.Info("host key rotation: sshd reloaded", "machine", id)
	// A new connection that accepts only the next key proves the machine
	// serves it; the old key is not accepted here any more.
	m = r.machine(id)
	m.HostKey, m.NextHostKey, m.FormerHostKeys = next, "", nil
	nc, err := r.e.Connector.Connect(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("rotate host key: the machine does not serve its new key after the reload: %w", err)
	}
	if err := rot.Scrub(ctx, nc); err != nil {
		_ = nc.Close()
		return nil, err
	}
	r.log.Info("host key rotation: old key and user-data copies removed", "machine", id)
	if err := r.update(ctx, id, func(m *state.Machine) {
		m.HostKey, m.NextHostKey, m.FormerHostKeys, m.HostKeyRotated = next, "", nil, true
	}); err != nil {
		_ = nc.Close()
		return nil, err
	}
	r.log.Info("host key rotated", "machine", id)
	return nc, nil
}

// replaceConn makes nc the run's session to machine id in place of old,
// and closes old; when another session has replaced old meanwhile, nc is
// closed instead.
func (r *run) replaceConn(id string, old, nc Conn) {
	r.mu.Lock()
	cur, ok := r.conns[id]
	if ok && cur != old {
		r.mu.Unlock()
		_ = nc.Close()
		return
	}
	r.conns[id] = nc
	r.mu.Unlock()
	_ = old.Close()
}

// rekeyDial bounds reaching a joined machine whose key a run rotates on the
// side (see rekey): an unreachable one must not hold the run up for a whole
// SSH stage.
const rekeyDial = 20 * time.Second

// rekey rotates the host key of a joined machine that never had it rotated
// (made by a provision from before rotation on first contact, whose
// user-data key still opens it), on the side of a run that otherwise leaves
// the machine alone. A failure is only a warning: the machine works as it
// did, and the next run tries again.
func (r *run) rekey(ctx context.Context, id string, sem chan struct{}, t Timeouts) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-sem }()
	m := r.machine(id)
	if ok, err := r.rotates(ctx, m); err != nil || !ok {
		return
	}
	r.emit(Event{Machine: id, Pool: m.Pool, Stage: StageSSH, Status: StatusStart, Detail: "rotate host key"})
	err := func() error {
		// Sessions of its own: the run's session to this machine (a
		// manager's, say) may be in use by joins, and stays valid.
		dctx, cancel := context.WithTimeout(ctx, rekeyDial)
		c, err := r.e.Connector.Connect(dctx, m)
		cancel()
		if err != nil {
			return err
		}
		defer c.Close()
		sctx, cancel := context.WithTimeout(ctx, t.SSH)
		defer cancel()
		nc, err := r.rotateHostKey(sctx, id, c)
		if err != nil {
			return err
		}
		_ = nc.Close()
		return nil
	}()
	if err != nil {
		r.log.Warn("could not rotate the host key of a joined machine; the next run tries again", "machine", id, "err", err)
		r.emit(Event{Machine: id, Pool: m.Pool, Stage: StageSSH, Status: StatusSkip, Detail: "host key not rotated: " + err.Error()})
		return
	}
	r.emit(Event{Machine: id, Pool: m.Pool, Stage: StageSSH, Status: StatusDone, Detail: "host key rotated"})
}
