package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newArtifacts(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "artifacts PLAN",
		Short: "Gather the Kubernetes artifacts a kind: kubeadm plan pushes to its nodes",
		Long: `Gather, verify and cache what every node of a kind: kubeadm cluster needs
beyond its distro's packages: kubeadm, kubelet, kubectl, kube-proxy, the
control-plane components, etcd, CoreDNS, containerd and the pause image, as
binaries and as single-layer images. The plan's kubernetes.artifacts.source
says where they come from:

  build    compile them from the Go module proxy (the default; about 15
           minutes on 2 cores the first time, a wrapper module per component)
  release  download the official release binaries and check their SHA-256
  dir      take them from a directory you staged (bin/kubeadm, bin/kubelet, …)

They are cached by version in ~/.cache/provision/kubernetes (PROVISION_CACHE
moves it), so this runs once per version; up does it too when needed. Nodes
never need the internet or a registry: provision pushes the bundle to each
node over SSH. Prints the bundle's directory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if s.Plan.Cluster.Kind != "kubeadm" {
				return fmt.Errorf("%s: cluster %q is kind %s; artifacts are for kind: kubeadm", args[0], s.Plan.Cluster.Name, s.Plan.Cluster.Kind)
			}
			b, err := s.Artifacts(cmd.Context())
			if err != nil {
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"version": b.Version, "dir": b.Dir, "id": b.ID, "images": b.Images})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Kubernetes %s artifacts (bundle %s):\n%s\n", b.Version, b.ID, b.Dir)
			return nil
		},
	}
}
