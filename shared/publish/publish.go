// Package publish sends coalmine's commands and lifecycle events to Pub/Sub
// with the official client (cloud.google.com/go/pubsub/v2), which talks to
// the emulator named by PUBSUB_EMULATOR_HOST when it is set.
package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/events"
)

// Bus publishes to the topics of one project.
type Bus struct {
	client *pubsub.Client
	owned  bool
	now    func() time.Time

	mu   sync.Mutex
	pubs map[string]*pubsub.Publisher
}

// New connects to Pub/Sub for project.
func New(ctx context.Context, project string, opts ...option.ClientOption) (*Bus, error) {
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("publish: pubsub client: %w", err)
	}
	b := NewWithClient(c)
	b.owned = true
	return b, nil
}

// NewWithClient publishes through an existing client (not closed by Close).
func NewWithClient(c *pubsub.Client) *Bus {
	return &Bus{client: c, now: time.Now, pubs: map[string]*pubsub.Publisher{}}
}

// Close flushes and stops the publishers (and the client when Bus made it).
func (b *Bus) Close() error {
	b.mu.Lock()
	for _, p := range b.pubs {
		p.Stop()
	}
	b.pubs = map[string]*pubsub.Publisher{}
	b.mu.Unlock()
	if b.owned {
		return b.client.Close()
	}
	return nil
}

func (b *Bus) publisher(topic string) *pubsub.Publisher {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pubs[topic]
	if !ok {
		p = b.client.Publisher(topic)
		// Commands are few and latency matters more than batching.
		p.PublishSettings.DelayThreshold = time.Millisecond
		p.PublishSettings.CountThreshold = 1
		b.pubs[topic] = p
	}
	return p
}

// Publish sends one message and waits until Pub/Sub has it.
func (b *Bus) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	id, err := b.publisher(topic).Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx)
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", topic, err)
	}
	return id, nil
}

// Command stamps c (version, time, ID when missing), validates it and
// publishes it on its topic.
func (b *Bus) Command(ctx context.Context, c events.Command) error {
	if c.Version == 0 {
		c.Version = events.CommandVersion
	}
	if c.Time.IsZero() {
		c.Time = b.now().UTC()
	}
	if c.ID == "" {
		c.ID = newID()
	}
	data, err := c.Encode()
	if err != nil {
		return fmt.Errorf("publish %s: %w", c, err)
	}
	_, err = b.Publish(ctx, c.Type.Topic(), data, map[string]string{events.AttrType: string(c.Type)})
	return err
}

// Event stamps e (version, time when missing) and publishes it on the
// events topic.
func (b *Bus) Event(ctx context.Context, e events.Lifecycle) error {
	if e.Version == 0 {
		e.Version = events.LifecycleVersion
	}
	if e.Time.IsZero() {
		e.Time = b.now().UTC()
	}
	data, err := e.Encode()
	if err != nil {
		return fmt.Errorf("publish %s event: %w", e.Type, err)
	}
	_, err = b.Publish(ctx, events.TopicEvents, data, map[string]string{events.AttrType: string(e.Type)})
	return err
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
