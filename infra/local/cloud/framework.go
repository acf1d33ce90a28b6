package cloud

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	_ "unsafe" // for go:linkname

	_ "github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/ai-square/coalmine/shared/release"
)

// The local cloud serves each function through the very http.Handler
// functions-framework-go wraps a CloudEvent function in when
// funcframework.StartHostPort serves it in production (functions/main.go):
// the same conversion of binary, structured and legacy (background event,
// raw Pub/Sub push) requests, the same answers to errors (500) and panics
// (500, after the framework's own report on stderr), the same errors it
// answers itself (400 with X-Google-Status: crash), the same
// CLOUD_RUN_TIMEOUT_SECONDS deadline and "Function error:" line on stderr.
//
// functions-framework-go v1.9.2 has no public way to get that handler: its
// only server is StartHostPort, which builds a ServeMux from the process-wide
// registry once, at start, prints a line on stdout for every registered
// function, and runs http.ListenAndServe on a fixed address, with no way to
// stop it. A local cloud needs its own Env (test hooks), and a test process
// starts and closes many local clouds: with the global server each would
// need its own unique paths registered before its own server started, a port
// picked before the framework listens on it (a race), and a server left
// running after Close. So the handler is taken from the framework's own
// wrapping function, wrapCloudEventFunction, which StartHostPort calls for
// every CloudEvent function. It is not exported; go:linkname reaches it, and
// frameworkVersion pins the version whose signature this declaration
// matches: a different version refuses to start instead of calling a
// function whose signature may have changed.
//
//go:linkname wrapCloudEventFunction github.com/GoogleCloudPlatform/functions-framework-go/funcframework.wrapCloudEventFunction
func wrapCloudEventFunction(ctx context.Context, fn func(context.Context, cloudevents.Event) error) (http.Handler, error)

const (
	frameworkModule  = "github.com/GoogleCloudPlatform/functions-framework-go"
	frameworkVersion = "v1.9.2"
)

// checkFramework reports whether the functions-framework-go built in is the
// version wrapCloudEventFunction was checked against. Test binaries carry no
// module versions; there TestFrameworkVersion checks go.mod instead.
var checkFramework = sync.OnceValue(func() error {
	info, ok := debug.ReadBuildInfo()
	if !ok || len(info.Deps) == 0 {
		return nil
	}
	for _, m := range info.Deps {
		if m.Path != frameworkModule {
			continue
		}
		if m.Replace != nil {
			m = m.Replace
		}
		if m.Version != frameworkVersion {
			return fmt.Errorf("local cloud: built with %s %s, but it serves functions through that module's wrapCloudEventFunction as of %s; check its signature and update frameworkVersion",
				frameworkModule, m.Version, frameworkVersion)
		}
		return nil
	}
	return fmt.Errorf("local cloud: %s is not in the build", frameworkModule)
})

// handler serves a CloudEvent function as functions-framework-go does.
func handler(ctx context.Context, fn release.Handler) (http.Handler, error) {
	if err := checkFramework(); err != nil {
		return nil, err
	}
	return wrapCloudEventFunction(ctx, fn)
}
