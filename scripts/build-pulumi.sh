#!/usr/bin/env bash
# build-pulumi.sh — builds the pulumi CLI and a Go language host
# (pulumi-language-go) from the Go module proxy alone, into
#   ${PROVISION_CACHE:-$HOME/.cache/provision}/pulumi/<version>/bin
# and prints that directory on its last line (stdout; progress goes to stderr).
# Safe to run again: a binary is kept when `pulumi version` (or the language
# host's source stamp) already matches.
#
#   scripts/build-pulumi.sh           build (or find) the binaries
#   scripts/build-pulumi.sh --check   also run the offline smoke test below
#
# Knobs: PULUMI_VERSION (default v3.259.0: pkg/v3 and sdk/v3 at one version),
# PULUMI_BUILD_JOBS (go build -p, default 2), PROVISION_CACHE.
#
# Why a wrapper module: `go install github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v`
# fails (pkg/v3's go.mod has replace directives), so the CLI is built inside a
# throwaway module that requires pkg/v3 and sdk/v3 at one version and copies
# pkg/v3's clipboard replace. The -X ...version.Version flag is needed: a CLI
# without a version refuses `--client` (Automation API), e.g. on destroy.
#
# Why our own language host: the module proxy answers 403 for every version of
# github.com/pulumi/pulumi/sdk/go/pulumi-language-go/v3, so the upstream host
# cannot be built here. The host below is ours, written against sdk/v3 only;
# it builds the program with `go build` and runs it with the PULUMI_* variables
# the Go SDK reads. It reports no required packages (providers are found on
# PATH when first used) and has no codegen, so `pulumi new/convert` do not work.
#
# Verified recipe for `pulumi up`/`destroy` offline (what --check runs; it also
# passes inside `unshare -n` with only loopback up, so nothing reaches the net):
#   export PATH=$BIN:$PATH               # required: pulumi-language-go must be on PATH
#                                        #   or next to the pulumi binary (symlinks resolved)
#   export PULUMI_HOME=$(mktemp -d)      # keep ~/.pulumi out of it
#   export PULUMI_CONFIG_PASSPHRASE=x    # required: `stack init` on a file backend fails without it
#   export PULUMI_SKIP_UPDATE_CHECK=true # the CLI otherwise asks the service for its latest version
#   export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true  # never download a missing plugin
#   export GOPROXY=off GOFLAGS=-mod=mod  # the program builds from the module cache only;
#                                        #   -mod=mod only because the smoke program has no go.sum
#   pulumi login file://$STATE_DIR
#   cd $PROGRAM_DIR                      # Pulumi.yaml `name: smoke` `runtime: go`; go.mod
#                                        #   requires sdk/v3 $PULUMI_VERSION (<= v3.263.0 is cached)
#   pulumi stack init dev
#   pulumi up --yes                      # builds the program with `go build`, runs it
#   pulumi stack output greeting         # -> "hello from dev"
#   pulumi destroy --yes
#   pulumi stack rm --yes dev
# A provider plugin (pulumi-resource-NAME) is found on PATH (the CLI then warns
# "using pulumi-resource-NAME from $PATH") or, without the warning, through the
# project's Pulumi.yaml:
#   plugins:
#     providers:
#       - name: NAME
#         path: ../../bin                # the directory holding pulumi-resource-NAME
# Both were checked with a small sdk/v3 provider: create, no-op second up, delete.
set -euo pipefail

PULUMI_VERSION=${PULUMI_VERSION:-v3.259.0}
JOBS=${PULUMI_BUILD_JOBS:-2}
CACHE=${PROVISION_CACHE:-$HOME/.cache/provision}
ROOT=$CACHE/pulumi/$PULUMI_VERSION
BIN=$ROOT/bin
SRC=$ROOT/src
CHECK=
for a in "$@"; do
  case $a in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-pulumi: unknown argument $a" >&2; exit 2 ;;
  esac
done

log() { echo "build-pulumi: $*" >&2; }
command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
mkdir -p "$BIN" "$SRC/cli" "$SRC/language-go"

# One build at a time per version (two `make pulumi-tools` at once wait here).
if command -v flock >/dev/null; then
  exec 9>"$ROOT/.lock"
  flock 9
fi

# The wrappers resolve their requirements themselves; a go.work or GOFLAGS of
# the caller must not leak in.
export GOWORK=off GOFLAGS=-mod=mod
LDVER="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"

cli_ok() {
  [ -x "$BIN/pulumi" ] || return 1
  local home v
  home=$(mktemp -d)
  v=$(PULUMI_HOME=$home PULUMI_SKIP_UPDATE_CHECK=true "$BIN/pulumi" version 2>/dev/null || true)
  rm -rf "$home"
  [ "$v" = "$PULUMI_VERSION" ]
}

build_cli() {
  local w=$SRC/cli
  cat >"$w/go.mod" <<EOF
module provision.local/pulumi-cli

go 1.25.11

require (
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
  cat >"$w/tools.go" <<'EOF'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
EOF
  log "building pulumi $PULUMI_VERSION (several minutes on 2 cores)"
  local t0=$SECONDS
  (cd "$w" && nice -n 10 go build -p "$JOBS" -trimpath -ldflags "-s -w $LDVER" \
    -o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  mv -f "$BIN/pulumi.tmp" "$BIN/pulumi"
  log "pulumi built in $((SECONDS - t0)) s"
}

# Source of the language host; its hash is the host's stamp.
langhost_src() {
  cat <<'EOF'
// Command pulumi-language-go is a small language host for `runtime: go`
// Pulumi programs, built by provision's scripts/build-pulumi.sh.
//
// The upstream host (module github.com/pulumi/pulumi/sdk/go/pulumi-language-go/v3)
// is not served by the Go module proxy this project can reach, so this one is
// written against github.com/pulumi/pulumi/sdk/v3 alone. It does what
// `pulumi preview/up/refresh/destroy` need from a language host: build the
// program with `go build`, run it with the engine's RunRequest passed in the
// PULUMI_* environment variables the Go SDK reads, and report the exit status.
// It reports no required packages: provider plugins are found by the engine
// when the program first uses them (on PATH or in $PULUMI_HOME/plugins).
// Code generation, packing and `pulumi new` are not supported.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/constant"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func main() {
	fs := flag.NewFlagSet("pulumi-language-go", flag.ContinueOnError)
	tracing := fs.String("tracing", "", "emit tracing to a Zipkin-compatible endpoint")
	// Accepted for compatibility with the upstream host's command line.
	fs.String("binary", "", "ignored")
	fs.String("buildTarget", "", "ignored")
	fs.String("root", "", "ignored")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-go", "pulumi-language-go", *tracing)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	h := &host{engine: fs.Arg(0), stop: stop}
	if h.engine != "" {
		// Exit when the engine that started us goes away.
		if err := rpcutil.Healthcheck(ctx, h.engine, 5*time.Minute, stop); err != nil {
			cmdutil.Exit(fmt.Errorf("health check of the engine: %w", err))
		}
	}
	cancel := make(chan bool)
	go func() { <-ctx.Done(); close(cancel) }()
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init: func(s *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(s, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start the language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port) // the engine reads the port from our first line
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu     sync.Mutex
	engine string
	stop   context.CancelFunc
}

func (h *host) engineAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engine
}

func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() == "" {
		return nil, errors.New("handshake: no engine address")
	}
	h.mu.Lock()
	first := h.engine == ""
	h.engine = req.GetEngineAddress()
	h.mu.Unlock()
	if first {
		if err := rpcutil.Healthcheck(context.Background(), req.GetEngineAddress(), 5*time.Minute, h.stop); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPackages reports none: the engine loads a provider plugin when
// the program registers the first resource of its package.
func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) GetProgramDependencies(context.Context, *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(gobin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("go version: %w", err)
	}
	return &pulumirpc.AboutResponse{Executable: gobin, Version: strings.TrimSpace(string(out))}, nil
}

// InstallDependencies fills the module cache for the program (`go mod download`).
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	srv pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(srv, req.GetIsTerminal())
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd := exec.Command("go", "mod", "download")
	cmd.Dir = req.GetInfo().GetProgramDirectory()
	if cmd.Dir == "" {
		cmd.Dir = req.GetDirectory() //nolint:staticcheck // older engines
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go mod download: %w", err)
	}
	return closer.Close()
}

// Run builds the program and runs it against the engine's resource monitor.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	engine := h.engineAddr()
	if engine == "" {
		return nil, errors.New("Run before Handshake: no engine address")
	}
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetPwd()
	}
	var binary, buildTarget string
	if o := req.GetInfo().GetOptions(); o != nil {
		m := o.AsMap()
		binary, _ = m["binary"].(string)
		buildTarget, _ = m["buildTarget"].(string)
	}

	prog := binary
	if prog != "" {
		if !filepath.IsAbs(prog) && strings.ContainsRune(prog, filepath.Separator) {
			prog = filepath.Join(dir, prog)
		} else if p, err := exec.LookPath(prog); err == nil {
			prog = p
		}
	} else {
		out := buildTarget
		if out == "" {
			f, err := os.CreateTemp("", "pulumi-go.*")
			if err != nil {
				return nil, err
			}
			f.Close()
			out = f.Name()
			defer os.Remove(out)
		} else if !filepath.IsAbs(out) {
			out = filepath.Join(dir, out)
		}
		build := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
		build.Dir = dir
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build in %s: %w", dir, err)
		}
		prog = out
	}

	env, err := runEnv(req, engine)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(prog)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exit) && exit.ExitCode() == constant.ExitStatusLoggedError:
		return &pulumirpc.RunResponse{Bail: true}, nil // the program already reported its error
	case errors.As(err, &exit):
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", exit.ExitCode())}, nil
	default:
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
}

// runEnv passes the RunRequest to the program the way the Go SDK reads it.
func runEnv(req *pulumirpc.RunRequest, engine string) ([]string, error) {
	env := os.Environ()
	set := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	if c := req.GetConfig(); c != nil {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		set(pulumi.EnvConfig, string(b))
	}
	keys := req.GetConfigSecretKeys()
	if keys == nil {
		keys = []string{}
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	set(pulumi.EnvConfigSecretKeys, string(b))
	set(pulumi.EnvOrganization, req.GetOrganization())
	set(pulumi.EnvProject, req.GetProject())
	set(pulumi.EnvPulumiRootDirectory, req.GetInfo().GetRootDirectory())
	set(pulumi.EnvStack, req.GetStack())
	set(pulumi.EnvDryRun, strconv.FormatBool(req.GetDryRun()))
	set(pulumi.EnvParallel, strconv.Itoa(int(req.GetParallel())))
	set(pulumi.EnvMonitor, req.GetMonitorAddress())
	set(pulumi.EnvEngine, engine)
	return env, nil
}
EOF
}

langhost_stamp() { { echo "$PULUMI_VERSION"; langhost_src; } | sha256sum | cut -c1-16; }

langhost_ok() {
  [ -x "$BIN/pulumi-language-go" ] && [ "$(cat "$BIN/.pulumi-language-go.stamp" 2>/dev/null)" = "$(langhost_stamp)" ]
}

build_langhost() {
  local w=$SRC/language-go
  cat >"$w/go.mod" <<EOF
module provision.local/pulumi-language-go

go 1.25.11

require github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
EOF
  langhost_src >"$w/main.go"
  log "building pulumi-language-go against sdk/v3 $PULUMI_VERSION"
  local t0=$SECONDS
  (cd "$w" && nice -n 10 go build -p "$JOBS" -trimpath -ldflags "-s -w $LDVER" \
    -o "$BIN/pulumi-language-go.tmp" .)
  mv -f "$BIN/pulumi-language-go.tmp" "$BIN/pulumi-language-go"
  langhost_stamp >"$BIN/.pulumi-language-go.stamp"
  log "pulumi-language-go built in $((SECONDS - t0)) s"
}

smoke() {
  local tmp rc=0
  tmp=$(mktemp -d)
  mkdir -p "$tmp/state" "$tmp/home" "$tmp/prog"
  cat >"$tmp/prog/Pulumi.yaml" <<'EOF'
name: smoke
runtime: go
EOF
  cat >"$tmp/prog/go.mod" <<EOF
module smoke

go 1.25.11

require github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
EOF
  cat >"$tmp/prog/main.go" <<'EOF'
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		ctx.Export("greeting", pulumi.String("hello from "+ctx.Stack()))
		return nil
	})
}
EOF
  log "smoke test in $tmp"
  (
    set -e
    cd "$tmp/prog"
    # No go.sum: -mod=mod writes it from the module cache, which the language
    # host's build filled with exactly this sdk/v3's dependencies.
    export PATH=$BIN:$PATH PULUMI_HOME=$tmp/home PULUMI_CONFIG_PASSPHRASE=smoke \
      PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
      GOPROXY=off GOFLAGS=-mod=mod
    pulumi login "file://$tmp/state" >&2
    pulumi stack init dev >&2
    pulumi up --yes >&2
    out=$(pulumi stack output greeting)
    [ "$out" = "hello from dev" ] || { echo "build-pulumi: smoke: stack output is '$out'" >&2; exit 1; }
    pulumi destroy --yes >&2
    pulumi stack rm --yes dev >&2
  ) || rc=$?
  if [ $rc = 0 ]; then log "smoke test passed"; rm -rf "$tmp"; else log "smoke test FAILED (left $tmp)"; fi
  return $rc
}

if cli_ok; then log "pulumi $PULUMI_VERSION already built"; else build_cli; fi
cli_ok || { log "built pulumi does not report version $PULUMI_VERSION"; exit 1; }
if langhost_ok; then log "pulumi-language-go already built"; else build_langhost; fi
[ -z "$CHECK" ] || smoke
echo "$BIN"
