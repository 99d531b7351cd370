package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisionhq/provision/autoscaler/service"
	"github.com/provisionhq/provision/internal/session"
)

func newAutoscaleDeploy(o *options) *cobra.Command {
	var do session.DeployOptions
	var replicas uint
	cmd := &cobra.Command{
		Use:   "deploy PLAN",
		Short: "Run the autoscaler as a Swarm service on the cluster's managers",
		Long: `Run provision autoscale inside the Swarm cluster it scales, as the service
` + service.Name + ` with --replicas replicas on the managers (one leads, the others
stand by, elected through the plan's etcd state).

Everything the service needs goes with it, so nothing is copied by hand:
  image      this provision binary (and this machine's CA certificates) as
             ` + service.Repository + `:<digest of the binary>, loaded on each
             manager over SSH: no registry
  secrets    the login key (ssh.key, --ssh-key, or the key provision manages
             for the cluster), the bastion key, etcd's TLS files and password
             file, and the cloud credentials of this shell's environment
             (AWS_*, GOOGLE_APPLICATION_CREDENTIALS and the file it names,
             OS_*, PROVISION_ETCD_PASSWORD) as Docker secrets under ` + service.SecretDir + `
  config     the plan, its file settings pointed at those secrets, at
             ` + service.PlanPath + `
Secrets and configs are named by their content: run deploy again after
changing the plan, rotating a key or upgrading provision, and the service is
updated to the new ones and the old ones are removed. With nothing changed it
changes nothing.

The plan must keep its state on etcd (state.backend: etcd) at an address the
managers reach, and its autoscaled pools must be on a cloud (the docker and
static providers' machines are made on the machine that ran up). Each
replica serves /metrics and /healthz on port ` + fmt.Sprint(service.MetricsPort) + ` of its container.

  provision autoscale deploy plan.yaml
  provision ssh plan.yaml managers -- docker service logs ` + service.Name,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if replicas == 0 {
				return fmt.Errorf("--replicas 0: use at least 1 (remove the service with docker service rm %s)", service.Name)
			}
			do.Replicas = uint64(replicas)
			do.LogLevel = o.logLevel
			if o.output != "json" {
				do.Progress = func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), msg) }
			}
			d, err := s.DeployAutoscaler(cmd.Context(), do)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
					"service": service.Name, "image": d.Image, "created": d.Created, "changed": d.Changed,
					"loaded_on": d.Loaded, "managers": d.Managers, "secrets": d.Secrets, "pruned": d.Pruned})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Service %s: %d replicas of %s on %d manager(s)\n", service.Name, replicas, d.Image, d.Managers)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.UintVar(&replicas, "replicas", 2, "how many replicas run (one leads)")
	fl.StringVar(&do.SSHKey, "ssh-key", "", "login key file the service uses (default: the plan's ssh.key, or the cluster's managed key)")
	fl.DurationVar(&do.Wait, "wait", 3*time.Minute, "wait this long for the replicas to run (0: do not wait)")
	if err := cmd.MarkFlagFilename("ssh-key"); err != nil {
		panic(err)
	}
	return cmd
}
