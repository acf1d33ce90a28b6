// Command coalmine is the operator CLI: it starts the local cloud, pushes
// local images, shows a service's rollout, and publishes operator commands
// (promote, abort, pause, resume, release, retry). Run `coalmine help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/scripts/coalmine/cli"
)

func main() {
	// The local Cloud Run emulator runs revisions as this same binary.
	sampleapp.RunIfChild()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
