// Package service owns the autoscaler as a Swarm service: the image of the
// provision binary, the plan as a Swarm config, the login key, etcd
// credentials and cloud credentials as Swarm secrets, and the service that
// runs them on the managers. Nothing secret is put in the service's
// arguments, environment or labels, where `docker service inspect` shows it.
package service

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
)

// Name is the autoscaler service's name: one per swarm, as a swarm is one
// provision cluster.
const Name = "provision-autoscaler"

// Labels on everything deploy creates, so a redeploy finds what it made.
const (
	LabelCluster = "provision.cluster"
	LabelPart    = "provision.autoscaler"
	// LabelImage on a manager node says which autoscaler image is loaded
	// there; the service is placed only on nodes with its own, so a
	// manager added later never gets a task it cannot start.
	LabelImage = "provision.autoscaler.image"
)

// Where the service's files appear inside its containers.
const (
	PlanPath  = "/etc/provision/plan.yaml"
	SecretDir = "/run/secrets"
	// EnvFile is the secret holding the cloud credentials as KEY=VALUE
	// lines, read by autoscale --env-file.
	EnvFile = "cloud-env"
	// WorkDir is the containers' working and home directory.
	WorkDir = "/var/lib/provision"
	// MetricsPort is where each replica serves /metrics and /healthz.
	MetricsPort = 9090
	dockerSock  = "/var/run/docker.sock"
)

// File is one secret file of the service: Name is its file name under
// SecretDir (ssh-key, etcd-ca, cloud-env...).
type File struct {
	Name string
	Data []byte
}

// Path is where the file is mounted in the service's containers.
func (f File) Path() string { return path.Join(SecretDir, f.Name) }

// Deployment is everything the service is made of.
type Deployment struct {
	Cluster  string
	Image    string // the loaded image's reference, tagged by content
	Replicas uint64
	Plan     []byte // the plan as the service reads it (see Relocate)
	Secrets  []File
	// LogLevel is autoscale's --log-level (default info).
	LogLevel string
}

// objectName names a secret or config by cluster, part and content: Swarm
// secrets and configs cannot change, so new content is a new object and the
// service is updated to it.
func (d Deployment) objectName(part string, data []byte) string {
	sum := sha256.Sum256(data)
	cluster := d.Cluster
	// Swarm allows 64 characters; the part and hash must survive.
	if room := 64 - len("provision--") - len(part) - 1 - 12; len(cluster) > room {
		cluster = cluster[:max(room, 0)]
	}
	return fmt.Sprintf("provision-%s-%s-%s", cluster, part, hex.EncodeToString(sum[:6]))
}

// Refs are the Swarm IDs of the deployment's secrets and plan config, by
// file name, and the config's.
type Refs struct {
	Secrets map[string]string // file name -> secret ID
	Config  string
}

// Args are the autoscale arguments the service runs with.
func (d Deployment) Args() []string {
	args := []string{"autoscale", "--plan", PlanPath, "--source", "swarm",
		"--docker-host", "unix://" + dockerSock, "--listen", fmt.Sprintf(":%d", MetricsPort)}
	if d.hasSecret(EnvFile) {
		args = append(args, "--env-file", path.Join(SecretDir, EnvFile))
	}
	if d.LogLevel != "" {
		args = append(args, "--log-level", d.LogLevel)
	}
	return args
}

func (d Deployment) hasSecret(name string) bool {
	return slices.ContainsFunc(d.Secrets, func(f File) bool { return f.Name == name })
}

// Spec is the service: Replicas tasks of the image on the managers that
// hold it, each with the manager's Docker socket (demand is read there),
// the plan and the secrets, restarted whatever ends them. The replicas
// elect a leader through the plan's etcd state.
func (d Deployment) Spec(refs Refs) swarm.ServiceSpec {
	replicas := d.Replicas
	delay, grace := 5*time.Second, 30*time.Second
	tag := d.Image[strings.LastIndex(d.Image, ":")+1:]
	cs := &swarm.ContainerSpec{
		Image:  d.Image,
		Labels: map[string]string{LabelCluster: d.Cluster},
		Args:   d.Args(),
		// TMPDIR: the image has no /tmp.
		Env:             []string{"HOME=" + WorkDir, "TMPDIR=" + WorkDir},
		Dir:             WorkDir,
		StopGracePeriod: &grace,
		Mounts:          []mount.Mount{{Type: mount.TypeBind, Source: dockerSock, Target: dockerSock}},
		Configs: []*swarm.ConfigReference{{
			ConfigID: refs.Config, ConfigName: d.objectName("plan", d.Plan),
			File: &swarm.ConfigReferenceFileTarget{Name: PlanPath, UID: "0", GID: "0", Mode: 0o444},
		}},
	}
	for _, f := range d.Secrets {
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			SecretID: refs.Secrets[f.Name], SecretName: d.objectName(f.Name, f.Data),
			File: &swarm.SecretReferenceFileTarget{Name: f.Name, UID: "0", GID: "0", Mode: 0o400},
		})
	}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: Name, Labels: map[string]string{LabelCluster: d.Cluster}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
			Placement: &swarm.Placement{Constraints: []string{
				"node.role == manager",
				fmt.Sprintf("node.labels.%s == %s", LabelImage, tag),
			}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
}
