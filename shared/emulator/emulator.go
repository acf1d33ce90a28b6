// Package emulator points Google's gRPC API clients at local servers (the emulators of the
// local cloud, or any server speaking the API on a host:port).
package emulator

import (
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ClientOptions returns the options that point a Google gRPC client at the server at host:
// its endpoint, no authentication and plaintext gRPC. An empty host returns nil: the real
// API, with Application Default Credentials.
func ClientOptions(host string) []option.ClientOption {
	if host == "" {
		return nil
	}
	return []option.ClientOption{
		option.WithEndpoint(host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}
