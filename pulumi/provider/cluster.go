package provider

import (
	"github.com/pulumi/pulumi-go-provider/infer"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
)

// Cluster is the provision:index:Cluster resource: a whole cluster, its
// machines created, bootstrapped over SSH and joined, as `provision up`
// would do from the same plan.
type Cluster struct {
	cacheDir string
	registry func() *providers.Registry
}

// The engine interfaces Cluster implements beyond Create.
var (
	_ infer.CustomCheck[ClusterArgs]                        = (*Cluster)(nil)
	_ infer.CustomDiff[ClusterArgs, ClusterState]           = (*Cluster)(nil)
	_ infer.CustomRead[ClusterArgs, ClusterState]           = (*Cluster)(nil)
	_ infer.CustomUpdate[ClusterArgs, ClusterState]         = (*Cluster)(nil)
	_ infer.CustomDelete[ClusterState]                      = (*Cluster)(nil)
	_ infer.ExplicitDependencies[ClusterArgs, ClusterState] = (*Cluster)(nil)
)

// Annotate pins the token: without it infer derives one from the Go package
// path, which differs between the plugin binary and tests.
func (c *Cluster) Annotate(a infer.Annotator) {
	a.SetToken("index", "Cluster")
	a.Describe(c, "A cluster of container hosts: machines from one or more providers, "+
		"bootstrapped over SSH with pinned host keys and joined into a Docker Swarm or, with kind kubeadm, "+
		"a Kubernetes cluster. Changing a pool's count adds or drains and removes machines; changing the cluster's "+
		"name or kind, how provision logs in, or the Kubernetes version, endpoint or address ranges "+
		"replaces the whole cluster.")
}

// ClusterArgs is the resource's inputs: plan.yaml's model, less what a
// Pulumi program has no use for (state backends live in the stack, keys are
// values rather than files).
type ClusterArgs struct {
	Name       string          `pulumi:"name,optional"`
	Kind       string          `pulumi:"kind,optional"`
	SSH        *SSHArgs        `pulumi:"ssh,optional"`
	Kubernetes *KubernetesArgs `pulumi:"kubernetes,optional"`
	Pools      []PoolArgs      `pulumi:"pools"`
}

func (a *ClusterArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Name, "The cluster's name: lowercase letters, digits and \"-\". It names the machines "+
		"and tags them at their provider. Default: the resource's name.")
	an.Describe(&a.Kind, "The cluster kind: swarm (the default, a Docker Swarm) or kubeadm (Kubernetes, "+
		"see kubernetes). k3s is refused: provision cannot build it offline.")
	an.Describe(&a.SSH, "How provision logs in to the machines.")
	an.Describe(&a.Kubernetes, "Kubernetes settings of a kind kubeadm cluster; defaults filled in when omitted. "+
		"Only a kubeadm cluster takes them.")
	an.Describe(&a.Pools, "Groups of identical machines, each from one provider.")
}

// SSHArgs say how provision logs in.
type SSHArgs struct {
	User       string       `pulumi:"user,optional"`
	Port       int          `pulumi:"port,optional"`
	PrivateKey string       `pulumi:"privateKey,optional" provider:"secret"`
	Bastion    *BastionArgs `pulumi:"bastion,optional"`
}

func (s *SSHArgs) Annotate(a infer.Annotator) {
	a.SetToken("index", "Ssh")
	a.Describe(&s.User, "The login user (default root); another user needs passwordless sudo.")
	a.Describe(&s.Port, "The SSH port of machines whose provider names none (default 22).")
	a.Describe(&s.PrivateKey, "The login key, an unencrypted private key in OpenSSH or PEM form. "+
		"When empty, an ed25519 key is generated at create and kept only in the secret privateKey output.")
	a.Describe(&s.Bastion, "A jump host between provision and the machines; provision logs in to it with the same key.")
}

// BastionArgs is a jump host. Its fields are optional to infer so that the
// plan loader reports what is missing, with its hints.
type BastionArgs struct {
	Host    string `pulumi:"host,optional"`
	Port    int    `pulumi:"port,optional"`
	User    string `pulumi:"user,optional"`
	HostKey string `pulumi:"hostKey,optional"`
}

func (b *BastionArgs) Annotate(a infer.Annotator) {
	a.SetToken("index", "Bastion")
	a.Describe(&b.Host, "The bastion's address.")
	a.Describe(&b.Port, "Its SSH port (default 22).")
	a.Describe(&b.User, "Its login user (default: ssh.user).")
	a.Describe(&b.HostKey, "Its public host key in authorized_keys form (ssh-keyscan -t ed25519 HOST): "+
		"provision never trusts an unknown host key.")
}

// KubernetesArgs is plan.yaml's kubernetes block. Its fields are optional
// to infer so that the plan loader fills in its defaults and says what is
// wrong, with its hints.
type KubernetesArgs struct {
	Version     string                   `pulumi:"version,optional"`
	Artifacts   *KubernetesArtifactsArgs `pulumi:"artifacts,optional"`
	Endpoint    string                   `pulumi:"endpoint,optional"`
	PodCIDR     string                   `pulumi:"podCidr,optional"`
	ServiceCIDR string                   `pulumi:"serviceCidr,optional"`
	Images      []string                 `pulumi:"images,optional"`
}

func (k *KubernetesArgs) Annotate(a infer.Annotator) {
	a.SetToken("index", "Kubernetes")
	a.Describe(&k.Version, "The Kubernetes release, \"v1.MINOR.PATCH\" (v1.31 or later; default "+plans.DefaultKubernetesVersion+
		" when the cluster is created, then kept). Changing it replaces the cluster.")
	a.Describe(&k.Artifacts, "Where the Kubernetes binaries and images pushed to every node come from.")
	a.Describe(&k.Endpoint, "host or host:port of a load balancer in front of the control-plane nodes. "+
		"Empty: every node balances over all control-plane nodes itself. Changing it replaces the cluster.")
	a.Describe(&k.PodCIDR, "The range pods get addresses from, a /24 per node (default 10.244.0.0/16). Changing it replaces the cluster.")
	a.Describe(&k.ServiceCIDR, "The range of ClusterIP Services (default 10.96.0.0/12). Changing it replaces the cluster.")
	a.Describe(&k.Images, "Image archives (docker save or OCI layout tarballs) on this machine, imported into every "+
		"node's containerd before it joins: the images of an air-gapped cluster.")
}

// KubernetesArtifactsArgs says where the Kubernetes artifacts come from.
type KubernetesArtifactsArgs struct {
	Source string `pulumi:"source,optional"`
	Dir    string `pulumi:"dir,optional"`
	URL    string `pulumi:"url,optional"`
}

func (k *KubernetesArtifactsArgs) Annotate(a infer.Annotator) {
	a.SetToken("index", "KubernetesArtifacts")
	a.Describe(&k.Source, "build (from the Go module proxy; the default, about 15 minutes the first time, cached after), "+
		"release (the official release binaries, checksums verified) or dir (a directory you staged).")
	a.Describe(&k.Dir, "The staged directory for source dir (bin/kubeadm, …).")
	a.Describe(&k.URL, "The release source's base URL (default https://dl.k8s.io/release).")
}

// PoolArgs is a group of identical machines from one provider.
type PoolArgs struct {
	Name     string            `pulumi:"name"`
	Provider string            `pulumi:"provider"`
	Count    int               `pulumi:"count"`
	Role     string            `pulumi:"role,optional"`
	Labels   map[string]string `pulumi:"labels,optional"`
	Taints   []string          `pulumi:"taints,optional"`
	Spot     bool              `pulumi:"spot,optional"`
	Settings map[string]any    `pulumi:"settings,optional"`
}

func (p *PoolArgs) Annotate(a infer.Annotator) {
	a.SetToken("index", "Pool")
	a.Describe(&p.Name, "The pool's name, unique in the cluster.")
	a.Describe(&p.Provider, "Where the machines come from: docker, static, aws, gcp or openstack.")
	a.Describe(&p.Count, "How many machines the pool has.")
	a.Describe(&p.Role, "manager or worker (the default). A cluster needs a pool of managers with count ≥ 1; "+
		"in a kubeadm cluster managers are control-plane nodes.")
	a.Describe(&p.Labels, "Labels put on the pool's machines at their provider.")
	a.Describe(&p.Taints, "Taints a kubeadm cluster's nodes of this pool get when they join: "+
		"key=value:Effect or key:Effect, e.g. dedicated=gpu:NoSchedule.")
	a.Describe(&p.Spot, "Ask the cloud for interruptible capacity (aws: spot instances, gcp: SPOT VMs): cheaper, "+
		"reclaimed at short notice; when the cloud has none the autoscaler fails over to the next pool.")
	a.Describe(&p.Settings, "The provider's settings for this pool, as in plan.yaml (e.g. instance_type, zone, image).")
}

// ClusterState is the resource's outputs: the inputs as checked (defaults
// filled in), the machines, and the secrets needed to reach and grow the
// cluster: a swarm's join tokens, or a kubeadm cluster's kubeconfig.
type ClusterState struct {
	ClusterArgs

	Nodes            []Node `pulumi:"nodes"`
	ManagerAddress   string `pulumi:"managerAddress"`
	PublicKey        string `pulumi:"publicKey"`
	PrivateKey       string `pulumi:"privateKey" provider:"secret"`
	WorkerJoinToken  string `pulumi:"workerJoinToken" provider:"secret"`
	ManagerJoinToken string `pulumi:"managerJoinToken" provider:"secret"`
	// Kubeconfig is optional so that the state of a cluster created before
	// it existed still decodes.
	Kubeconfig string `pulumi:"kubeconfig,optional" provider:"secret"`
	// State is provision's state document (JSON): machine IDs, provider
	// IDs, addresses, pinned public host keys, bootstrap phases. It holds no
	// secret. Each operation seeds the engine's state backend from it and
	// saves the result back, so the stack is the only record.
	State string `pulumi:"state"`
}

func (s *ClusterState) Annotate(a infer.Annotator) {
	a.Describe(&s.Nodes, "The cluster's machines.")
	a.Describe(&s.ManagerAddress, "The address of the primary manager, the node the others joined through.")
	a.Describe(&s.PublicKey, "The login key's public half (authorized_keys form).")
	a.Describe(&s.PrivateKey, "The login key: ssh.privateKey, or the key generated at create.")
	a.Describe(&s.WorkerJoinToken, "The swarm's join token for workers (empty for kubeadm).")
	a.Describe(&s.ManagerJoinToken, "The swarm's join token for managers (empty for kubeadm).")
	a.Describe(&s.Kubeconfig, "A kubeadm cluster's admin kubeconfig, whose server is kubernetes.endpoint or the first "+
		"control-plane node that answered (empty for swarm). It holds the admin's private key.")
	a.Describe(&s.State, "provision's state document (JSON, no secrets): what the next operation starts from.")
}

// Node is one machine of the cluster.
type Node struct {
	ID             string `pulumi:"id"`
	Pool           string `pulumi:"pool"`
	Role           string `pulumi:"role"`
	Provider       string `pulumi:"provider"`
	ProviderID     string `pulumi:"providerId"`
	Address        string `pulumi:"address"`
	Port           int    `pulumi:"port"`
	PrivateAddress string `pulumi:"privateAddress,optional"`
	Phase          string `pulumi:"phase"`
}

func (n *Node) Annotate(a infer.Annotator) {
	a.SetToken("index", "Node")
	a.Describe(&n.ID, "provision's machine ID; also the node's name in the swarm or Kubernetes.")
	a.Describe(&n.ProviderID, "The provider's own ID (container, instance or server ID).")
	a.Describe(&n.Address, "The address provision reaches the machine on over SSH.")
	a.Describe(&n.Port, "The machine's SSH port.")
	a.Describe(&n.PrivateAddress, "The address other nodes reach it on, when it differs from address.")
	a.Describe(&n.Phase, "How far bootstrap came: intent, created, ready, joined or removing.")
}

// WireDependencies marks the secret outputs as secret whatever the inputs:
// a generated key, a join token or a kubeconfig never depends on a secret
// input, so the default flow (secret in, secret out) would leave them in
// plain text.
func (*Cluster) WireDependencies(f infer.FieldSelector, _ *ClusterArgs, s *ClusterState) {
	f.OutputField(&s.PrivateKey).AlwaysSecret()
	f.OutputField(&s.WorkerJoinToken).AlwaysSecret()
	f.OutputField(&s.ManagerJoinToken).AlwaysSecret()
	f.OutputField(&s.Kubeconfig).AlwaysSecret()
}
