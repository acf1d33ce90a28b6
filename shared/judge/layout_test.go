package judge

import "math"

// Latency bucket layout of the tests and the simulation: Cloud Monitoring's exponential
// buckets with growth factor 1.4, scale 1 ms and 64 finite buckets, so bounds 1.4^0 ..
// 1.4^64 ms (see docs/verification.md for why this layout).
const (
	layoutGrowth = 1.4
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
