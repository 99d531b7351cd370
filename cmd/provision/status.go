package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/state"
)

type nodeStatus struct {
	ID           string `json:"id"`
	Pool         string `json:"pool"`
	Role         string `json:"role"`
	Provider     string `json:"provider"`
	Address      string `json:"address"`
	Phase        string `json:"phase"`
	Cluster      string `json:"cluster_status"` // ready, down, not a member, unknown
	Availability string `json:"availability,omitempty"`
	Leader       bool   `json:"leader,omitempty"`
}

func newStatus(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status PLAN",
		Short: "Show machines, addresses, cluster membership and health",
		Long: `Show every machine in state with its address and bootstrap phase, and how
the cluster sees it (asked of a manager over SSH). Exit status is 0 when every
machine is joined and ready, 1 otherwise; --output json for scripts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			st, err := s.Backend.Read(cmd.Context())
			if err != nil {
				return err
			}
			members, merr := s.Members(cmd.Context(), st)
			rows := make([]nodeStatus, 0, len(st.Machines))
			healthy := merr == nil
			for _, m := range st.Machines {
				r := nodeStatus{ID: m.ID, Pool: m.Pool, Role: m.Role, Provider: m.Provider, Address: m.Address, Phase: string(m.Phase), Cluster: "unknown"}
				if merr == nil {
					r.Cluster = "not a member"
					if mem, ok := members[m.ID]; ok {
						r.Cluster, r.Availability, r.Leader = mem.Status, mem.Availability, mem.Leader
					}
				}
				if m.Phase != state.PhaseJoined || r.Cluster != "ready" {
					healthy = false
				}
				rows = append(rows, r)
			}
			if o.output == "json" {
				out := map[string]any{"cluster": s.Plan.Cluster.Name, "machines": rows, "healthy": healthy}
				if merr != nil {
					out["cluster_error"] = merr.Error()
				}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(out); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "MACHINE\tPOOL\tROLE\tPROVIDER\tADDRESS\tPHASE\tCLUSTER")
				for _, r := range rows {
					c := r.Cluster
					if r.Availability != "" && r.Availability != "active" {
						c += " (" + r.Availability + ")"
					}
					if r.Leader {
						c += " leader"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pool, r.Role, r.Provider, r.Address, r.Phase, c)
				}
				_ = w.Flush()
				if len(rows) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "No machines: run `provision up %s`.\n", args[0])
				}
				if merr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "cluster membership unknown: %v\n", merr)
				}
			}
			if !healthy {
				return &exitCode{code: 1}
			}
			return nil
		},
	}
}

func newSSH(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh PLAN NODE [-- COMMAND...]",
		Short: "Open a shell on a machine, or run a command there",
		Long: `Connect to a machine over SSH with the cluster's key, verifying the host key
pinned in state. NODE is a machine ID, a unique part of one, or a pool name
(its first machine). Without COMMAND an interactive shell opens. The exit
status is the command's.

  provision ssh examples/local.yaml managers -- docker node ls`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			st, err := s.Backend.Read(cmd.Context())
			if err != nil {
				return err
			}
			m, err := findMachine(st, args[1])
			if err != nil {
				return err
			}
			c, _, err := s.Connector()
			if err != nil {
				return err
			}
			dctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			client, err := c.Dial(dctx, m)
			cancel()
			if err != nil {
				return err
			}
			defer client.Close()
			if len(args) == 2 {
				err = client.Shell(cmd.Context(), os.Stdin, os.Stdout, os.Stderr)
			} else {
				err = client.Exec(cmd.Context(), strings.Join(args[2:], " "), os.Stdin, os.Stdout, os.Stderr)
			}
			var exit *bootstrap.ExitError
			if errors.As(err, &exit) {
				return &exitCode{code: exit.Status}
			}
			return err
		},
	}
}

// findMachine resolves NODE: an exact ID, a pool name, or a unique substring.
func findMachine(st *state.State, q string) (state.Machine, error) {
	if m := st.Machine(q); m != nil {
		return *m, nil
	}
	var pool, sub []state.Machine
	for _, m := range st.Machines {
		if m.Pool == q {
			pool = append(pool, m)
		}
		if strings.Contains(m.ID, q) {
			sub = append(sub, m)
		}
	}
	if len(pool) > 0 {
		return pool[0], nil
	}
	if len(sub) == 1 {
		return sub[0], nil
	}
	ids := make([]string, 0, len(st.Machines))
	for _, m := range st.Machines {
		ids = append(ids, m.ID)
	}
	if len(sub) > 1 {
		return state.Machine{}, fmt.Errorf("%q matches %d machines; be more specific (machines: %s)", q, len(sub), strings.Join(ids, ", "))
	}
	return state.Machine{}, fmt.Errorf("no machine %q (machines: %s)", q, strings.Join(ids, ", "))
}

func newKubeconfig(o *options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "kubeconfig PLAN",
		Short: "Write an admin kubeconfig for a kind: kubeadm cluster",
		Long: `Read the cluster's admin kubeconfig from a control-plane node over SSH and
write it, mode 0600, to --file (default: kubeconfig in the cluster's state
directory, .provision/<cluster>/kubeconfig). Its server is the plan's
kubernetes.endpoint, or else the first control-plane node that answers; its CA
is the cluster's own, so kubectl verifies the API server.

  provision kubeconfig examples/kubernetes.yaml
  kubectl --kubeconfig .provision/k8s/kubeconfig get nodes

The file holds the cluster admin's private key: keep it like one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := load(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			st, err := s.Backend.Read(cmd.Context())
			if err != nil {
				return err
			}
			b, err := s.Kubeconfig(cmd.Context(), st)
			if err != nil {
				return err
			}
			if file == "" {
				file = filepath.Join(s.Dir, "kubeconfig")
			}
			if err := writePrivate(file, b); err != nil {
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]string{"kubeconfig": file})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s\n  kubectl --kubeconfig %s get nodes\n", file, file)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "where to write the kubeconfig (default .provision/<cluster>/kubeconfig)")
	return cmd
}

// writePrivate writes a secret file atomically with mode 0600.
func writePrivate(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubeconfig-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
