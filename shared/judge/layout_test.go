package judge

import "math"

// Latency bucket layout of the tests and the simulation: the local Monitoring server's
// request_latencies layout (infra/local/monitoringemu: exponential, growth factor √2, scale
// 1 ms, 64 finite buckets, so bounds √2^0 .. √2^64 ms; see docs/verification.md for why).
const (
	layoutGrowth = math.Sqrt2
	layoutScale  = 1.0
	layoutFinite = 64
)

func latencyBounds() []float64 {
	b := make([]float64, layoutFinite+1)
	for i := range b {
		b[i] = layoutScale * math.Pow(layoutGrowth, float64(i))
	}
	return b
}
