package provider

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/session"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/state"
)

// Create makes the cluster. A failure after some machines exist still
// returns them (as a resource that failed to initialize), so Pulumi records
// them and the next update resumes instead of leaking them.
func (c *Cluster) Create(ctx context.Context, req infer.CreateRequest[ClusterArgs]) (infer.CreateResponse[ClusterState], error) {
	args := req.Inputs
	if req.DryRun {
		// Everything but the inputs is unknown until the machines exist.
		return infer.CreateResponse[ClusterState]{Output: ClusterState{ClusterArgs: args}}, nil
	}
	key := sshOf(args).PrivateKey
	if key == "" {
		generated, err := generateKey()
		if err != nil {
			return infer.CreateResponse[ClusterState]{}, err
		}
		key = generated
	}
	out, err := c.apply(ctx, args, nil, key)
	resp := infer.CreateResponse[ClusterState]{ID: args.Name, Output: out}
	if err != nil {
		if len(out.Nodes) == 0 {
			return infer.CreateResponse[ClusterState]{}, err
		}
		return resp, infer.ResourceInitFailedError{Reasons: []string{err.Error()}}
	}
	return resp, nil
}

// Update converges the cluster to the new inputs: pools grow, shrink (drain
// first), appear and go, and a pool whose provider or role changed has its
// machines replaced. Diff sends every other change to a replacement.
func (c *Cluster) Update(ctx context.Context, req infer.UpdateRequest[ClusterArgs, ClusterState]) (infer.UpdateResponse[ClusterState], error) {
	if req.DryRun {
		out := req.State
		out.ClusterArgs = req.Inputs
		return infer.UpdateResponse[ClusterState]{Output: out}, nil
	}
	prior, err := decodeState(req.State.State)
	if err != nil {
		return infer.UpdateResponse[ClusterState]{}, err
	}
	key := cmp.Or(sshOf(req.Inputs).PrivateKey, req.State.PrivateKey)
	if key == "" {
		return infer.UpdateResponse[ClusterState]{}, errors.New("the cluster's login key is in neither ssh.privateKey nor the privateKey output: refresh cannot recover it; replace the cluster")
	}
	out, err := c.apply(ctx, req.Inputs, prior, key)
	if err != nil {
		// Keep what the run recorded, and the old tokens or kubeconfig if
		// none were read.
		out.WorkerJoinToken = cmp.Or(out.WorkerJoinToken, req.State.WorkerJoinToken)
		out.ManagerJoinToken = cmp.Or(out.ManagerJoinToken, req.State.ManagerJoinToken)
		out.Kubeconfig = cmp.Or(out.Kubeconfig, req.State.Kubeconfig)
		return infer.UpdateResponse[ClusterState]{Output: out}, infer.ResourceInitFailedError{Reasons: []string{err.Error()}}
	}
	return infer.UpdateResponse[ClusterState]{Output: out}, nil
}

// Delete deletes every machine of the cluster, found in the state or by
// the tags their providers carry, then the cluster's local directory. On
// failure Pulumi keeps the resource and a retry finishes the job.
func (c *Cluster) Delete(ctx context.Context, req infer.DeleteRequest[ClusterState]) (infer.DeleteResponse, error) {
	pl, err := mustPlan(req.State.ClusterArgs, c.registry())
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	prior, err := decodeState(req.State.State)
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	s := c.session(ctx, pl, state.NewMemory(prior), nil)
	report, err := s.Destroyer("down", progress(ctx)).Destroy(ctx, pl)
	if err != nil {
		return infer.DeleteResponse{}, fmt.Errorf("delete cluster %s: %w", pl.Cluster.Name, err)
	}
	p.GetLogger(ctx).Infof("deleted %d machines of cluster %s", report.Deleted, pl.Cluster.Name)
	if err := os.RemoveAll(s.Dir); err != nil {
		return infer.DeleteResponse{}, fmt.Errorf("remove the cluster's local files: %w", err)
	}
	return infer.DeleteResponse{}, nil
}

// Read refreshes the machines from their providers: addresses as the
// providers report them, and machines that vanished dropped (the next
// update recreates them). A cluster with no machine left is gone.
// Machines a provider has but the state does not know are left to the next
// update, which deletes them as the CLI does.
func (c *Cluster) Read(ctx context.Context, req infer.ReadRequest[ClusterArgs, ClusterState]) (infer.ReadResponse[ClusterArgs, ClusterState], error) {
	st, err := decodeState(req.State.State)
	if err != nil {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, err
	}
	if st == nil {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, errors.New("provision:index:Cluster cannot be imported: its state (machine IDs and pinned host keys) exists only in the stack that created it")
	}
	pl, err := mustPlan(req.State.ClusterArgs, c.registry())
	if err != nil {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, err
	}
	had := len(st.Machines)
	mem := state.NewMemory(st)
	if _, err := c.session(ctx, pl, mem, nil).Destroyer("refresh", nil).Refresh(ctx, pl); err != nil {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, fmt.Errorf("refresh cluster %s: %w", pl.Cluster.Name, err)
	}
	// Every write bumps the serial: keep the prior document when nothing
	// moved, so a refresh that finds nothing new shows no change.
	if after := mem.Snapshot(); after != nil && !reflect.DeepEqual(after.Machines, st.Machines) {
		st = after
	}
	if had > 0 && len(st.Machines) == 0 {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, nil // gone: Pulumi drops the resource
	}
	out := req.State
	if err := out.record(st); err != nil {
		return infer.ReadResponse[ClusterArgs, ClusterState]{}, err
	}
	if pl.Cluster.Kind == "kubeadm" {
		// A refresh is not the place to fail on a control plane that does
		// not answer right now: the machines were refreshed, and the
		// kubeconfig read before still holds the cluster's CA and admin.
		if err := c.refreshKubeconfig(ctx, pl, st, &out); err != nil {
			p.GetLogger(ctx).Warningf("kubeconfig not refreshed, kept as it was: %v", err)
		}
	}
	return infer.ReadResponse[ClusterArgs, ClusterState]{ID: req.ID, Inputs: req.Inputs, State: out}, nil
}

// refreshKubeconfig reads the kubeconfig again, logging in with the
// cluster's key.
func (c *Cluster) refreshKubeconfig(ctx context.Context, pl *plans.Plan, st *state.State, out *ClusterState) error {
	key := cmp.Or(sshOf(out.ClusterArgs).PrivateKey, out.PrivateKey)
	if key == "" {
		return errors.New("the cluster's login key is in neither ssh.privateKey nor the privateKey output")
	}
	signer, err := parseKey(key)
	if err != nil {
		return fmt.Errorf("login key: %w", err)
	}
	return out.readKubeconfig(ctx, c.session(ctx, pl, nil, signer), st)
}

// apply runs the engine on the plan of args from the prior state (nil for
// a new cluster) and returns the outputs, as complete as the run got.
func (c *Cluster) apply(ctx context.Context, args ClusterArgs, prior *state.State, key string) (ClusterState, error) {
	out := ClusterState{ClusterArgs: args, PrivateKey: key}
	if err := out.record(prior); err != nil {
		return out, err
	}
	pl, err := mustPlan(args, c.registry())
	if err != nil {
		return out, err
	}
	signer, err := parseKey(key)
	if err != nil {
		return out, fmt.Errorf("ssh.privateKey: %w", err)
	}
	out.PublicKey = session.Authorized(signer)
	mem := state.NewMemory(prior)
	s := c.session(ctx, pl, mem, signer)
	eng, err := s.Engine(ctx, "pulumi", progress(ctx))
	if err != nil {
		return out, err
	}
	report, applyErr := eng.Apply(ctx, pl)
	if snap := mem.Snapshot(); snap != nil {
		if err := out.record(snap); err != nil {
			return out, errors.Join(applyErr, err)
		}
	}
	if applyErr != nil {
		return out, fmt.Errorf("apply cluster %s: %w", pl.Cluster.Name, applyErr)
	}
	p.GetLogger(ctx).Infof("cluster %s: %d created, %d deleted, %d resumed, %d unchanged in %s",
		pl.Cluster.Name, report.Created, report.Deleted, report.Resumed, report.Unchanged, report.Duration.Round(time.Second))
	if pl.Cluster.Kind == "kubeadm" {
		// No join tokens: the kubeadm driver's are 15-minute bootstrap
		// tokens, worthless as outputs. The kubeconfig is how a program
		// reaches the cluster.
		err = out.readKubeconfig(ctx, s, mem.Snapshot())
	} else {
		err = out.readTokens(ctx, s, mem.Snapshot())
	}
	if err != nil {
		return out, err
	}
	return out, nil
}

// session is the wiring every front end uses, with the state in memory and
// the login key from the stack.
func (c *Cluster) session(ctx context.Context, pl *plans.Plan, backend state.Backend, signer ssh.Signer) *session.Session {
	return &session.Session{
		Plan:     pl,
		Registry: c.registry(),
		Dir:      filepath.Join(c.cacheDir, pl.Cluster.Name),
		Backend:  backend,
		Log:      engineLog(ctx),
		Signer:   signer,
	}
}

// tokenTimeout bounds reading the join tokens from the primary manager.
const tokenTimeout = time.Minute

// readTokens asks a manager, the primary first, for the swarm's join
// tokens.
func (s *ClusterState) readTokens(ctx context.Context, sess *session.Session, st *state.State) error {
	if st == nil {
		return errors.New("the cluster has no joined manager to read join tokens from")
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	conn, m, err := sess.DialManager(ctx, st)
	if err != nil {
		return fmt.Errorf("read join tokens: %w", err)
	}
	defer conn.Close()
	mgr := cluster.Node{Name: m.ID, Address: m.Address, Role: m.Role, Run: conn}
	for _, t := range []struct {
		role string
		into *string
	}{{"worker", &s.WorkerJoinToken}, {"manager", &s.ManagerJoinToken}} {
		cred, err := sess.Driver().Credential(ctx, mgr, t.role)
		if err != nil {
			return err
		}
		*t.into = cred.Secret()
	}
	return nil
}

// kubeconfigTimeout bounds reading the kubeconfig: the session tries each
// control-plane node for up to 20 s, and a cluster has few.
const kubeconfigTimeout = time.Minute

// readKubeconfig reads a kubeadm cluster's admin kubeconfig from a
// control-plane node.
func (s *ClusterState) readKubeconfig(ctx context.Context, sess *session.Session, st *state.State) error {
	if st == nil {
		return errors.New("the cluster has no joined control-plane node to read the kubeconfig from")
	}
	ctx, cancel := context.WithTimeout(ctx, kubeconfigTimeout)
	defer cancel()
	b, err := sess.Kubeconfig(ctx, st)
	if err != nil {
		return fmt.Errorf("read the cluster's kubeconfig: %w", err)
	}
	s.Kubeconfig = string(b)
	return nil
}

// record sets the outputs that describe the machines from st (nil: none).
func (s *ClusterState) record(st *state.State) error {
	s.Nodes, s.ManagerAddress, s.State = []Node{}, "", ""
	if st == nil {
		return nil
	}
	doc, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode the cluster's state: %w", err)
	}
	s.State = string(doc)
	for _, m := range st.Machines {
		s.Nodes = append(s.Nodes, Node{
			ID: m.ID, Pool: m.Pool, Role: m.Role, Provider: m.Provider, ProviderID: m.ProviderID,
			Address: m.Address, Port: cmp.Or(m.Port, sshOf(s.ClusterArgs).Port, 22), PrivateAddress: m.PrivateAddress,
			Phase: string(m.Phase),
		})
	}
	order := map[string]int{}
	for i, pool := range s.Pools {
		order[pool.Name] = i
	}
	slices.SortFunc(s.Nodes, func(a, b Node) int {
		return cmp.Or(cmp.Compare(order[a.Pool], order[b.Pool]), cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.ID, b.ID))
	})
	if pm := st.PrimaryManager(); pm != nil {
		s.ManagerAddress = pm.Address
	}
	return nil
}

// decodeState reads the state output; "" is a cluster with no state yet.
// The memory backend checks and migrates the document when it is read.
func decodeState(doc string) (*state.State, error) {
	if doc == "" {
		return nil, nil
	}
	var st state.State
	if err := json.Unmarshal([]byte(doc), &st); err != nil {
		return nil, fmt.Errorf("decode the state output: %w", err)
	}
	return &st, nil
}

// sshOf is args' SSH settings, empty when none were given.
func sshOf(args ClusterArgs) SSHArgs {
	if args.SSH == nil {
		return SSHArgs{}
	}
	return *args.SSH
}

// generateKey makes the cluster's login key when the program gives none.
// It lives only in the secret privateKey output, never on disk.
func generateKey() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate the cluster's login key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "provision")
	if err != nil {
		return "", fmt.Errorf("encode the cluster's login key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), nil
}

// progress shows the engine's per-machine progress as the resource's status
// line in `pulumi up`.
func progress(ctx context.Context) func(apply.Event) {
	log := p.GetLogger(ctx)
	return func(ev apply.Event) {
		msg := fmt.Sprintf("%s (%s): %s %s", ev.Machine, ev.Pool, ev.Stage, ev.Status)
		if ev.Err != "" {
			msg += ": " + ev.Err
		}
		log.InfoStatus(msg)
	}
}
