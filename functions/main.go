// Command functions is the one binary that serves every coalmine function
// (the production container image). FUNCTION_TARGET picks the function
// served on "/"; without it every function is served at /NAME. PORT sets
// the port (default 8080).
package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "github.com/ai-square/coalmine/functions/alert"
	_ "github.com/ai-square/coalmine/functions/backup"
	_ "github.com/ai-square/coalmine/functions/deploy"
	_ "github.com/ai-square/coalmine/functions/rollback"
	_ "github.com/ai-square/coalmine/functions/shift"
	_ "github.com/ai-square/coalmine/functions/verify"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.StartHostPort("", port); err != nil {
		log.Fatalf("functions: %v", err)
	}
}
