// Command pulumi-resource-provision is provision's Pulumi provider plugin.
// The Pulumi engine starts it and speaks gRPC to it; it is not run by hand.
// Install it on PATH or in ~/.pulumi/bin (see the README's Pulumi section).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	p "github.com/pulumi/pulumi-go-provider"

	"github.com/provisionhq/provision/pulumi/provider"
)

// version is the plugin's version, set at build time with
// -ldflags "-X main.version=1.2.3".
var version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pulumi-resource-provision:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	prov, err := provider.New(provider.Options{})
	if err != nil {
		return err
	}
	return p.RunProvider(ctx, provider.Name, version, prov)
}
