package runemu

import (
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Server-side defaults Cloud Run fills into a revision template it stores. The set is the
// template fields the Terraform provider marks as filled by the API (default_from_api in
// magic-modules' cloudrunv2/Service.yaml) with the values a `gcloud run services describe`
// of a fresh service shows. Execution environment and service account are left alone: the
// first is not filled by the API, the second needs the project number.
const (
	defaultTimeout             = 300 * time.Second
	defaultConcurrency         = 80
	defaultMaxInstances        = 100
	defaultCPU                 = "1000m"
	defaultMemory              = "512Mi"
	defaultPortName            = "http1"
	defaultPort                = 8080
	defaultStartupProbeSeconds = 240 // the startup probe's timeout and period
)

// withDefaults returns a copy of t with Cloud Run's server-side defaults filled in where the
// client left a field unset: the request timeout, concurrency, maximum instances, each
// container's CPU and memory limits, and for the ingress container (the one declaring a
// port, else the first) a port http1:8080 and a TCP startup probe on it. Values the client
// set are kept.
func withDefaults(t *runpb.RevisionTemplate) *runpb.RevisionTemplate {
	if t == nil {
		return nil
	}
	t = proto.CloneOf(t)
	if t.Timeout == nil {
		t.Timeout = durationpb.New(defaultTimeout)
	}
	if t.MaxInstanceRequestConcurrency == 0 {
		t.MaxInstanceRequestConcurrency = defaultConcurrency
	}
	if t.Scaling == nil {
		t.Scaling = &runpb.RevisionScaling{}
	}
	if t.Scaling.MaxInstanceCount == 0 {
		t.Scaling.MaxInstanceCount = defaultMaxInstances
	}
	for _, c := range t.Containers {
		if c.Resources == nil {
			c.Resources = &runpb.ResourceRequirements{}
		}
		if c.Resources.Limits == nil {
			c.Resources.Limits = make(map[string]string)
		}
		if c.Resources.Limits["cpu"] == "" {
			c.Resources.Limits["cpu"] = defaultCPU
		}
		if c.Resources.Limits["memory"] == "" {
			c.Resources.Limits["memory"] = defaultMemory
		}
	}
	if len(t.Containers) == 0 {
		return t
	}
	c := ingressContainer(t)
	if len(c.Ports) == 0 {
		c.Ports = []*runpb.ContainerPort{{}}
	}
	p := c.Ports[0]
	if p.Name == "" {
		p.Name = defaultPortName
	}
	if p.ContainerPort == 0 {
		p.ContainerPort = defaultPort
	}
	if c.StartupProbe == nil {
		c.StartupProbe = &runpb.Probe{
			TimeoutSeconds:   defaultStartupProbeSeconds,
			PeriodSeconds:    defaultStartupProbeSeconds,
			FailureThreshold: 1,
			ProbeType:        &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: p.ContainerPort}},
		}
	}
	return t
}

// sameConfiguration reports whether two templates configure the same revision: equal after
// defaults, the revision name aside.
func sameConfiguration(a, b *runpb.RevisionTemplate) bool {
	a, b = withDefaults(a), withDefaults(b)
	a.Revision, b.Revision = "", ""
	return proto.Equal(a, b)
}
