package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/provisionhq/provision/internal/progress"
	"github.com/provisionhq/provision/internal/session"
)

// options are the flags every command shares.
type options struct {
	output   string // text or json
	logLevel string
	progress string // auto, tty, plain, none
}

func newRoot() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "provision",
		Short: "Create container-host clusters on any cloud from a plan.yaml",
		Long: `provision turns a plan.yaml into a running cluster: it creates the machines
(aws, gcp, openstack; docker for local hosts; static for existing ones),
installs the container runtime over verified SSH, and joins every machine to
a Docker Swarm or, with kind: kubeadm, a Kubernetes cluster.

  provision validate plan.yaml    check a plan without touching anything
  provision plan plan.yaml        show what up would change
  provision up plan.yaml          create, bootstrap and join what is missing
  provision status plan.yaml      machines, addresses and cluster health
  provision ssh plan.yaml NODE    a shell or a command on a machine
  provision kubeconfig plan.yaml  an admin kubeconfig for a kubeadm cluster
  provision artifacts plan.yaml   gather the Kubernetes binaries and images
  provision down plan.yaml        delete every machine and the state
  provision autoscale plan.yaml   grow and shrink autoscaled pools with demand

State is kept in .provision/<cluster>/ (see the plan's state: block). A run
that is interrupted (Ctrl-C, kill -9, a lost network) leaves a state that the
next up resumes from.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error (logs go to stderr; next to up's and down's progress, warn unless debug)")
	root.PersistentFlags().StringVar(&o.progress, "progress", "auto", "progress display: auto (a live line per machine on a terminal, else plain), plain (a timestamped line per machine step), none")
	root.AddCommand(newValidate(o), newPlan(o), newUp(o), newDown(o), newStatus(o), newKubeconfig(o), newArtifacts(o), newSSH(o), newImage(o), newAutoscale(o))
	return root
}

func (o *options) validate() error {
	switch o.output {
	case "text", "json":
	default:
		return fmt.Errorf("--output %q: use text or json", o.output)
	}
	switch o.progress {
	case "auto", "plain", "none", "tty":
	default:
		return fmt.Errorf("--progress %q: use auto, plain or none", o.progress)
	}
	return nil
}

func (o *options) logger(w io.Writer) (*slog.Logger, error) {
	lvl, err := o.level()
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

func (o *options) level() (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(o.logLevel))); err != nil {
		return lvl, fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	return lvl, nil
}

// mode is how up and down show the engine's progress.
func (o *options) mode() progress.Mode {
	switch {
	case o.output == "json":
		return progress.JSON
	case o.progress == "none":
		return progress.None
	case o.liveDisplay():
		return progress.Live
	}
	return progress.Plain
}

// display starts up's or down's progress display on w and makes the
// session's log fit it: a person reads the steps, and logs only at warn and
// above (everything with --log-level debug, except under a live display,
// which owns the terminal). Next to plain step lines, log lines on errw take
// the same form. JSON and no display keep the log as it is.
func (o *options) display(w, errw io.Writer, s *session.Session) *progress.Display {
	mode := o.mode()
	lvl, err := o.level()
	if err != nil { // load checked it already
		lvl = slog.LevelInfo
	}
	switch mode {
	case progress.Live:
		s.Log = slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: max(lvl, slog.LevelWarn)}))
	case progress.Plain:
		quiet := lvl
		if lvl > slog.LevelDebug {
			quiet = max(lvl, slog.LevelWarn)
		}
		s.Log = slog.New(progress.Handler(errw, quiet))
		// A first Kubernetes build says what it is doing, in the same form.
		s.Progress = slog.New(progress.Handler(errw, lvl))
	}
	return progress.New(w, mode)
}

func (o *options) liveDisplay() bool {
	if o.output == "json" {
		return false
	}
	switch o.progress {
	case "tty":
		return true
	case "auto":
		return term.IsTerminal(int(os.Stdout.Fd()))
	}
	return false
}
