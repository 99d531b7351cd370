package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisionhq/provision/autoscaler/service"
	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/providers/builtin"
	"github.com/provisionhq/provision/providers/docker"
)

func newValidate(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "validate PLAN",
		Short: "Check a plan: syntax, fields, pools, key files and provider settings",
		Long: `Check a plan without touching any machine or state. Every problem is
reported with file:line:col and a hint; the exit status is 1 when any is found.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			// The loader runs every provider's static settings check: no
			// credentials, no network, and no state backend opened.
			p, err := plans.Load(args[0], plans.Options{Providers: builtin.Registry()})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"valid": true, "cluster": p.Cluster.Name, "machines": p.Desired(nil)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: cluster %q, %d pools, %d machines.\n", args[0], p.Cluster.Name, len(p.Pools), p.Desired(nil))
			return nil
		},
	}
}

func newPlan(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "plan PLAN",
		Short: "Show what `up` would change, from the recorded state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			e := &apply.Engine{Backend: s.Backend}
			changes, err := e.Plan(cmd.Context(), s.Plan)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(changesJSON(changes))
			}
			changes.Render(cmd.OutOrStdout())
			return nil
		},
	}
}

type changeJSON struct {
	Action  string `json:"action"`
	Machine string `json:"machine,omitempty"`
	Pool    string `json:"pool"`
	Role    string `json:"role"`
	Reason  string `json:"reason,omitempty"`
}

func changesJSON(c *plans.Changes) map[string]any {
	items := []changeJSON{}
	for _, it := range c.Items {
		j := changeJSON{Action: it.Action.String(), Pool: it.Pool, Role: string(it.Role), Reason: it.Reason}
		if it.Before != nil {
			j.Machine = it.Before.ID
		}
		items = append(items, j)
	}
	return map[string]any{"lineage": c.Lineage, "serial": c.Serial, "changes": items,
		"create": c.Count(plans.Create), "delete": c.Count(plans.Delete), "resume": c.Count(plans.Resume), "unchanged": c.Count(plans.NoOp)}
}

func newUp(o *options) *cobra.Command {
	var parallelism int
	cmd := &cobra.Command{
		Use:   "up PLAN",
		Short: "Create, bootstrap and join what the plan has and the cluster lacks",
		Long: `Converge the cluster to the plan: create missing machines (one provider call
per pool), wait for SSH with the pinned host key, install the container
runtime, and join each machine to the cluster; remove machines the plan no
longer wants (drained first). Each machine runs its own pipeline, so a worker
starts bootstrapping as soon as it exists.

Progress is a live line per machine on a terminal and timestamped lines
otherwise (--progress plain); --output json prints events as JSON lines.
Running up again on an unchanged plan changes nothing. An interrupted up
(Ctrl-C, kill -9) resumes where it stopped on the next run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			prog := o.display(cmd.OutOrStdout(), cmd.ErrOrStderr(), s)
			e, err := s.Engine(cmd.Context(), "up", prog.Event)
			if err != nil {
				return err
			}
			if parallelism < 0 {
				return fmt.Errorf("--parallelism %d: use a positive number, or 0 for the default", parallelism)
			}
			e.Parallelism = parallelism
			rep, err := e.Apply(cmd.Context(), s.Plan)
			prog.Close()
			if rep != nil {
				printReport(cmd, o, "up", rep, err)
			}
			return err
		},
	}
	cmd.Flags().IntVar(&parallelism, "parallelism", 0, fmt.Sprintf("machines bootstrapped at once (default a quarter of the open-file limit, at most %d: %d here)", apply.MaxDefaultParallelism, apply.DefaultParallelism()))
	return cmd
}

func printReport(cmd *cobra.Command, o *options, op string, rep *apply.Report, err error) {
	if o.output == "json" {
		out := map[string]any{"operation": op, "created": rep.Created, "failed": failedJSON(rep.Failed), "deleted": rep.Deleted, "resumed": rep.Resumed,
			"unchanged": rep.Unchanged, "adopted": rep.Adopted, "orphans_deleted": rep.Orphans, "seconds": rep.Duration.Seconds(), "ok": err == nil}
		if err != nil {
			out["error"] = err.Error()
		}
		_ = json.NewEncoder(cmd.OutOrStdout()).Encode(out)
		return
	}
	fmt.Fprint(cmd.OutOrStdout(), reportLine(op, rep, err))
}

func failedJSON(fs []apply.Failure) []apply.Failure {
	if fs == nil {
		return []apply.Failure{}
	}
	return fs
}

// reportLine is a run's one-line summary: what it created, what failed
// (each machine with the stage it failed at), and the rest.
func reportLine(op string, rep *apply.Report, err error) string {
	if op == "up" && rep.Created+rep.Deleted+rep.Resumed+rep.Orphans+rep.Adopted+len(rep.Failed) == 0 && err == nil {
		return fmt.Sprintf("No changes: %d machines match the plan (%s).\n", rep.Unchanged, rep.Duration.Round(10*time.Millisecond))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d created", op, rep.Created)
	if n := len(rep.Failed); n > 0 {
		names := make([]string, n)
		for i, f := range rep.Failed {
			names[i] = f.Machine + " at " + string(f.Stage)
		}
		fmt.Fprintf(&b, ", %d failed (%s)", n, strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, ", %d resumed, %d deleted, %d unchanged", rep.Resumed, rep.Deleted, rep.Unchanged)
	if rep.Adopted+rep.Orphans > 0 {
		fmt.Fprintf(&b, ", %d adopted, %d orphans deleted", rep.Adopted, rep.Orphans)
	}
	fmt.Fprintf(&b, " in %s.\n", rep.Duration.Round(100*time.Millisecond))
	return b.String()
}

func newDown(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "down PLAN",
		Short: "Delete every machine of the cluster, its network and its state",
		Long: `Delete every machine of the cluster — those in state and any other the
providers find tagged with the cluster's name — then the state directory.
A failed down keeps the state of what is left; run it again to finish.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			prog := o.display(cmd.OutOrStdout(), cmd.ErrOrStderr(), s)
			rep, err := s.Destroyer("down", prog.Event).Destroy(cmd.Context(), s.Plan)
			prog.Close()
			if err == nil {
				// The login key and provider files go with the cluster.
				for _, f := range []string{s.ManagedKeyPath(), s.ManagedKeyPath() + ".pub"} {
					_ = os.Remove(f)
				}
				_ = os.RemoveAll(s.ProviderDir())
				_ = os.Remove(s.Dir)
				if s.Plan.State.Path == "" {
					_ = os.Remove(filepath.Dir(s.Dir)) // .provision, when no other cluster uses it
				}
			}
			if rep != nil {
				printReport(cmd, o, "down", rep, err)
			}
			return err
		},
	}
}

func newImage(o *options) *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Manage the local node image used by the docker provider"}
	img.AddCommand(&cobra.Command{
		Use:   "build",
		Short: "Build (or reuse) the docker provider's node image from Debian with debootstrap",
		Long: `Build the node image the docker provider runs machines from: a Debian root
filesystem made with debootstrap and imported with docker import (no registry
needed). The tag is a hash of the recipe, so an unchanged recipe reuses the
cached image. The first build takes about two minutes and needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := o.logger(os.Stderr)
			if err != nil {
				return err
			}
			ref, err := docker.EnsureImage(cmd.Context(), log)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	})
	img.AddCommand(newImageAutoscaler(o))
	return img
}

// AutoscalerImage is the image `provision image autoscaler` writes by
// default, the one examples/kubernetes/autoscaler.yaml runs.
const AutoscalerImage = "provision.local/provision:latest"

func newImageAutoscaler(o *options) *cobra.Command {
	var file, ref string
	cmd := &cobra.Command{
		Use:   "autoscaler",
		Short: "Write an image of this provision binary, to run the autoscaler in a cluster",
		Long: `Write a single-layer image holding this provision binary (and the CA
certificates of this machine, for cloud APIs) as an image archive, for
provision autoscale running inside the cluster it scales
(examples/kubernetes/autoscaler.yaml). No registry is needed: list the archive
under kubernetes.images in the plan, and every node imports it into its
containerd, nodes added later included.

  provision image autoscaler --file provision-autoscaler.tar

The binary must be statically linked (make build builds it so).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			im, err := service.Image(exe, ref)
			if err != nil {
				return err
			}
			if err := artifacts.WriteImages(file, im); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]string{"file": file, "image": ref})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s (%s)\n", file, ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "provision-autoscaler.tar", "the image archive to write")
	cmd.Flags().StringVar(&ref, "image", AutoscalerImage, "the image's name and tag")
	return cmd
}
