package scheduleremu

import (
	"context"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Publisher publishes firings with a Pub/Sub client (pstest, Google's Pub/Sub emulator or
// Pub/Sub itself): Options{Publish: NewPublisher(c).Publish}. Topics are full names, so one
// client serves every project.
type Publisher struct {
	c    *pubsub.Client
	mu   sync.Mutex
	pubs map[string]*pubsub.Publisher
}

// NewPublisher publishes through c, which the caller keeps and closes after Stop.
func NewPublisher(c *pubsub.Client) *Publisher {
	return &Publisher{c: c, pubs: map[string]*pubsub.Publisher{}}
}

// Publish sends one message to topic (projects/P/topics/T) and waits until Pub/Sub has it.
// The error is the client's, gRPC code included.
func (p *Publisher) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	p.mu.Lock()
	pub, ok := p.pubs[topic]
	if !ok {
		pub = p.c.Publisher(topic)
		// One message per firing: send it now rather than batch.
		pub.PublishSettings.CountThreshold = 1
		pub.PublishSettings.DelayThreshold = time.Millisecond
		p.pubs[topic] = pub
	}
	p.mu.Unlock()
	return pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx)
}

// Stop flushes and stops the publishers.
func (p *Publisher) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.pubs {
		pub.Stop()
	}
	p.pubs = map[string]*pubsub.Publisher{}
}
