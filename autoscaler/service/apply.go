package service

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// LoadImage makes sure the node behind c has image ref, loading it from
// the archive open returns when it has not, and labels the node with the
// image's tag so the service may be placed there. It reports whether it
// loaded the image.
func LoadImage(ctx context.Context, c *client.Client, ref string, open func() (io.ReadCloser, error)) (loaded bool, err error) {
	if _, err := c.ImageInspect(ctx, ref); err != nil {
		if !cerrdefs.IsNotFound(err) {
			return false, fmt.Errorf("inspect image %s: %w", ref, err)
		}
		archive, err := open()
		if err != nil {
			return false, err
		}
		defer archive.Close()
		res, err := c.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
		if err != nil {
			return false, fmt.Errorf("load image %s: %w", ref, err)
		}
		err = loadErrors(res)
		res.Close()
		if err != nil {
			return false, fmt.Errorf("load image %s: %w", ref, err)
		}
		loaded = true
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return loaded, fmt.Errorf("node info: %w", err)
	}
	id := info.Info.Swarm.NodeID
	if id == "" || !info.Info.Swarm.ControlAvailable {
		return loaded, fmt.Errorf("not a swarm manager (swarm state %q)", info.Info.Swarm.LocalNodeState)
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	return loaded, labelNode(ctx, c, id, tag)
}

// loadErrors reads a load's JSON message stream to its end and returns the
// error it reports, if any.
func loadErrors(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if msg := cmp.Or(m.ErrorDetail.Message, m.Error); msg != "" {
				return errors.New(msg)
			}
		}
	}
	return sc.Err()
}

// labelNode sets the image label on node id, retrying a version conflict
// (another update of the node in between).
func labelNode(ctx context.Context, c *client.Client, id, tag string) error {
	for attempt := 0; ; attempt++ {
		n, err := c.NodeInspect(ctx, id, client.NodeInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect node %s: %w", id, err)
		}
		spec := n.Node.Spec
		if spec.Labels[LabelImage] == tag {
			return nil
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[LabelImage] = tag
		_, err = c.NodeUpdate(ctx, id, client.NodeUpdateOptions{Version: n.Node.Version, Spec: spec})
		if err == nil {
			return nil
		}
		if attempt == 3 || !strings.Contains(err.Error(), "out of sequence") {
			return fmt.Errorf("label node %s: %w", id, err)
		}
	}
}

// Result says what Apply did.
type Result struct {
	Created bool     // the service was new
	Changed bool     // its spec changed (false: the same deployment again)
	Pruned  []string // secrets and configs of earlier deployments removed
}

// Apply creates or updates the service on the manager behind c, with the
// deployment's secrets and plan config (made when missing), then removes
// the secrets and configs of earlier deployments that nothing uses.
func Apply(ctx context.Context, c *client.Client, d Deployment) (Result, error) {
	var res Result
	filter := client.Filters{}.Add("label", LabelCluster+"="+d.Cluster)
	secrets, err := c.SecretList(ctx, client.SecretListOptions{Filters: filter})
	if err != nil {
		return res, fmt.Errorf("list secrets: %w", err)
	}
	configs, err := c.ConfigList(ctx, client.ConfigListOptions{Filters: filter})
	if err != nil {
		return res, fmt.Errorf("list configs: %w", err)
	}
	refs := Refs{Secrets: map[string]string{}}
	for _, f := range d.Secrets {
		name := d.objectName(f.Name, f.Data)
		i := slices.IndexFunc(secrets.Items, func(s swarm.Secret) bool { return s.Spec.Name == name })
		if i >= 0 {
			refs.Secrets[f.Name] = secrets.Items[i].ID
			continue
		}
		out, err := c.SecretCreate(ctx, client.SecretCreateOptions{Spec: swarm.SecretSpec{
			Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelCluster: d.Cluster, LabelPart: f.Name}},
			Data:        f.Data,
		}})
		if err != nil {
			return res, fmt.Errorf("create secret %s: %w", name, err)
		}
		refs.Secrets[f.Name] = out.ID
	}
	planName := d.objectName("plan", d.Plan)
	if i := slices.IndexFunc(configs.Items, func(s swarm.Config) bool { return s.Spec.Name == planName }); i >= 0 {
		refs.Config = configs.Items[i].ID
	} else {
		out, err := c.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: swarm.ConfigSpec{
			Annotations: swarm.Annotations{Name: planName, Labels: map[string]string{LabelCluster: d.Cluster, LabelPart: "plan"}},
			Data:        d.Plan,
		}})
		if err != nil {
			return res, fmt.Errorf("create config %s: %w", planName, err)
		}
		refs.Config = out.ID
	}

	spec := d.Spec(refs)
	cur, err := c.ServiceInspect(ctx, Name, client.ServiceInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		// The image is on the managers, not in a registry: asking one for
		// its digest would only fail.
		if _, err := c.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec, QueryRegistry: false}); err != nil {
			return res, fmt.Errorf("create service %s: %w", Name, err)
		}
		res.Created, res.Changed = true, true
	case err != nil:
		return res, fmt.Errorf("inspect service %s: %w", Name, err)
	default:
		if owner := cur.Service.Spec.Labels[LabelCluster]; owner != d.Cluster {
			return res, fmt.Errorf("service %s on this swarm belongs to cluster %q, not %q", Name, owner, d.Cluster)
		}
		if !sameSpec(cur.Service.Spec, spec) {
			if _, err := c.ServiceUpdate(ctx, cur.Service.ID, client.ServiceUpdateOptions{Version: cur.Service.Version, Spec: spec}); err != nil {
				return res, fmt.Errorf("update service %s: %w", Name, err)
			}
			res.Changed = true
		}
	}

	used := map[string]bool{refs.Config: true}
	for _, id := range refs.Secrets {
		used[id] = true
	}
	for _, s := range secrets.Items {
		if !used[s.ID] {
			if _, err := c.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{}); err == nil {
				res.Pruned = append(res.Pruned, s.Spec.Name)
			}
		}
	}
	for _, s := range configs.Items {
		if !used[s.ID] {
			if _, err := c.ConfigRemove(ctx, s.ID, client.ConfigRemoveOptions{}); err == nil {
				res.Pruned = append(res.Pruned, s.Spec.Name)
			}
		}
	}
	return res, nil
}

// sameSpec says whether the running service already is the deployment:
// the image, arguments, replicas, secrets and config (by content-named
// object), which is all a deployment sets.
func sameSpec(a, b swarm.ServiceSpec) bool {
	ca, cb := a.TaskTemplate.ContainerSpec, b.TaskTemplate.ContainerSpec
	if ca == nil || cb == nil || a.Mode.Replicated == nil || a.Mode.Replicated.Replicas == nil {
		return false
	}
	return sameContainer(ca, cb) && slices.Equal(ca.Env, cb.Env) &&
		*a.Mode.Replicated.Replicas == *b.Mode.Replicated.Replicas &&
		slices.Equal(a.TaskTemplate.Placement.Constraints, b.TaskTemplate.Placement.Constraints)
}

// sameContainer: the same image, arguments, secrets and config.
func sameContainer(a, b *swarm.ContainerSpec) bool {
	objects := func(cs *swarm.ContainerSpec) []string {
		var out []string
		for _, s := range cs.Secrets {
			out = append(out, s.SecretName)
		}
		for _, c := range cs.Configs {
			out = append(out, c.ConfigName)
		}
		slices.Sort(out)
		return out
	}
	return a.Image == b.Image && slices.Equal(a.Args, b.Args) && slices.Equal(objects(a), objects(b))
}

// Wait waits until the service runs its replicas on the current spec
// (image, plan and secrets), reporting progress, or until ctx ends; then
// it says what the tasks last reported (a missing image, a failing
// start), the part an operator needs.
func Wait(ctx context.Context, c *client.Client, d Deployment, progress func(running int)) error {
	want := d.Spec(Refs{}).TaskTemplate.ContainerSpec
	last := -1
	var lastErr string
	for {
		tasks, err := c.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.Add("service", Name)})
		if err == nil {
			running := 0
			for _, t := range tasks.Items {
				if cs := t.Spec.ContainerSpec; cs == nil || !sameContainer(cs, want) {
					continue
				}
				switch {
				case t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning:
					running++
				case t.Status.Err != "":
					lastErr = fmt.Sprintf("task %s: %s", t.ID[:min(12, len(t.ID))], t.Status.Err)
				}
			}
			if running != last && progress != nil {
				progress(running)
				last = running
			}
			if uint64(running) == d.Replicas {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != "" {
				return fmt.Errorf("%d of %d replicas running; last task error: %s", max(last, 0), d.Replicas, lastErr)
			}
			return fmt.Errorf("%d of %d replicas running: %w", max(last, 0), d.Replicas, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
