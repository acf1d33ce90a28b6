// Package e2e holds the end-to-end tests: each starts a whole local cloud
// (Pub/Sub, the Cloud Run emulator, the functions, the bridge), drives it
// the way an operator does (pushes, CLI commands) and checks the result
// from outside with the official Google clients and plain HTTP. They run
// once per Pub/Sub backend: embedded pstest, and Google's Pub/Sub emulator
// when it is installed (COALMINE_E2E_PUBSUB=pstest or gcloud picks one).
package e2e
