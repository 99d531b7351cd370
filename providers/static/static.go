// Package static owns the provider for machines that already exist: a pool
// lists its hosts and their own SSH host keys, Create assigns a free host to
// each machine ID (remembered on disk so it is stable), and Delete releases
// the assignment without touching the host.
package static

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/provisionhq/provision/providers"
)

// AssignmentsFile is where, under the provider's Env.Dir, the host each
// machine ID was given is kept.
const AssignmentsFile = "static-assignments.json"

// Provider hands out pre-existing hosts.
type Provider struct {
	path   string
	logger *slog.Logger
	// mu serialises read-modify-write of the assignments file within this
	// process. Two processes sharing one Dir are kept apart by the engine's
	// state lock, not here.
	mu sync.Mutex
}

var (
	_ providers.Provider      = (*Provider)(nil)
	_ providers.HostKeyKeeper = (*Provider)(nil)
)

// KeepsHostKeys is true: a static host is the user's own machine. Its key
// never went through user-data (the plan names it, nothing hands it out),
// the user and others may have it in known_hosts, and the host outlives
// the cluster; so provision pins it as it is and never rotates it.
func (*Provider) KeepsHostKeys() bool { return true }

// New returns the static provider keeping its assignments in env.Dir.
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	if env.Dir == "" {
		return nil, errors.New("static provider: Env.Dir is required to remember host assignments")
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{path: filepath.Join(env.Dir, AssignmentsFile), logger: logger.With("provider", "static")}, nil
}

// assignment is one host given to one machine.
type assignment struct {
	Machine providers.MachineID `json:"machine"`
	Cluster string              `json:"cluster"`
	Pool    string              `json:"pool"`
	Address string              `json:"address"`
	Port    int                 `json:"port"`
	HostKey string              `json:"host_key"`
}

type assignmentsDoc struct {
	Version     int          `json:"version"`
	Assignments []assignment `json:"assignments"`
}

func (a assignment) endpoint() string { return net.JoinHostPort(a.Address, strconv.Itoa(a.Port)) }

func (a assignment) machine() providers.Machine {
	return providers.Machine{
		ID: a.Machine, ProviderID: a.endpoint(), Cluster: a.Cluster, Pool: a.Pool,
		Address: a.Address, Port: a.Port, State: providers.StateRunning, HostKey: a.HostKey,
	}
}

// Create gives each spec a host: the one it already has, else the first free
// host of its pool. Assignments that fit are kept even when the pool runs out
// of hosts; the error then wraps providers.ErrCapacity and the machines that
// did get a host are returned with it.
func (p *Provider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pools := make([][]Host, len(specs))
	for i, s := range specs {
		if s.ID == "" || s.Cluster == "" {
			return nil, fmt.Errorf("%w: machine spec without ID or cluster", providers.ErrInvalidSpec)
		}
		hosts, err := decodeSettings(s.Settings)
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", s.ID, err)
		}
		pools[i] = hosts
	}
	doc, err := p.load()
	if err != nil {
		return nil, err
	}
	byMachine := map[providers.MachineID]assignment{}
	taken := map[string]bool{}
	for _, a := range doc.Assignments {
		byMachine[a.Machine] = a
		taken[a.endpoint()] = true
	}
	var out []providers.Machine
	var short []string
	changed := false
	for i, s := range specs {
		if a, ok := byMachine[s.ID]; ok {
			out = append(out, a.machine())
			continue
		}
		var got *assignment
		for _, h := range pools[i] {
			if !taken[h.endpoint()] {
				got = &assignment{Machine: s.ID, Cluster: s.Cluster, Pool: s.Pool, Address: h.Address, Port: h.Port, HostKey: h.HostKey}
				break
			}
		}
		if got == nil {
			short = append(short, string(s.ID))
			continue
		}
		taken[got.endpoint()] = true
		byMachine[s.ID] = *got
		doc.Assignments = append(doc.Assignments, *got)
		changed = true
		out = append(out, got.machine())
		p.logger.InfoContext(ctx, "host assigned", "machine", s.ID, "host", got.endpoint())
	}
	if changed {
		if err := p.save(doc); err != nil {
			return nil, err
		}
	}
	if len(short) > 0 {
		return out, &providers.Error{Kind: providers.ErrCapacity, Cloud: "static", Pool: specs[0].Pool,
			Message: fmt.Sprintf("no free host for %d machines %v: every listed host is assigned (add hosts to the pool or delete machines)", len(short), short)}
	}
	return out, nil
}

// List returns the machines assigned a host in the selected cluster/pool.
func (p *Provider) List(ctx context.Context, sel providers.Selector) ([]providers.Machine, error) {
	if sel.Cluster == "" {
		return nil, fmt.Errorf("%w: list: selector without cluster", providers.ErrInvalidSpec)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	doc, err := p.load()
	if err != nil {
		return nil, err
	}
	var out []providers.Machine
	for _, a := range doc.Assignments {
		if a.Cluster == sel.Cluster && (sel.Pool == "" || a.Pool == sel.Pool) {
			out = append(out, a.machine())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete releases the machines' hosts; the hosts themselves are untouched.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	doc, err := p.load()
	if err != nil {
		return err
	}
	drop := map[providers.MachineID]bool{}
	for _, id := range ids {
		drop[id] = true
	}
	kept := doc.Assignments[:0]
	for _, a := range doc.Assignments {
		if drop[a.Machine] {
			p.logger.InfoContext(ctx, "host released", "machine", a.Machine, "host", a.endpoint())
			continue
		}
		kept = append(kept, a)
	}
	if len(kept) == len(doc.Assignments) {
		return nil
	}
	doc.Assignments = kept
	return p.save(doc)
}

const docVersion = 1

func (p *Provider) load() (assignmentsDoc, error) {
	doc := assignmentsDoc{Version: docVersion}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, fmt.Errorf("read static assignments: %w", err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("read static assignments %s: %w", p.path, err)
	}
	if doc.Version != docVersion {
		return doc, fmt.Errorf("static assignments %s: version %d, this provision reads %d", p.path, doc.Version, docVersion)
	}
	return doc, nil
}

// save writes the document atomically: temp file in the same directory,
// fsync, rename.
func (p *Provider) save(doc assignmentsDoc) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("write static assignments: %w", err)
	}
	dir := filepath.Dir(p.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write static assignments: %w", err)
	}
	f, err := os.CreateTemp(dir, ".static-assignments-*.json")
	if err != nil {
		return fmt.Errorf("write static assignments: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write static assignments: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write static assignments: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write static assignments: %w", err)
	}
	if err := os.Rename(f.Name(), p.path); err != nil {
		return fmt.Errorf("write static assignments: %w", err)
	}
	return nil
}
