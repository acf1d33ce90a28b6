package runemu

import (
	"fmt"
	"regexp"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// maxServiceIDLen: "must be fewer than 50 characters" (CreateServiceRequest.service_id).
	maxServiceIDLen = 49
	// maxRevisionNameLen is a DNS label's length, as Kubernetes names revisions.
	maxRevisionNameLen = 63
	// maxTagLen is a DNS label's length.
	maxTagLen = 63
	// maxTagAndServiceLen: Cloud Run refuses a traffic tag whose length plus the service
	// name's exceeds this.
	maxTagAndServiceLen = 46
	// maxAnnotationBytes is the Kubernetes budget for one object's annotations (keys and
	// values), which Cloud Run applies.
	maxAnnotationBytes = 256 << 10
)

var (
	// dnsLabel: a lower-case letter first, then letters, digits and hyphens, no trailing hyphen.
	dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	// reservedNamespaces are the label/annotation namespaces Cloud Run v2 rejects.
	reservedNamespaces = []string{"run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev"}
)

// invalid returns an INVALID_ARGUMENT error naming field.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// validateServiceID checks CreateServiceRequest.service_id.
func validateServiceID(id string) error {
	switch {
	case id == "":
		return invalid("service_id", "is required")
	case len(id) > maxServiceIDLen:
		return invalid("service_id", "%q is %d characters long; it must be fewer than 50", id, len(id))
	case !dnsLabel.MatchString(id):
		return invalid("service_id", "%q must start with a lower-case letter, contain only lower-case letters, digits and hyphens, and not end with a hyphen", id)
	}
	return nil
}

// validateRevisionName checks an explicit Template.Revision of service id.
func validateRevisionName(serviceID, name string) error {
	const field = "service.template.revision"
	switch {
	case !strings.HasPrefix(name, serviceID+"-") || len(name) == len(serviceID)+1:
		return invalid(field, "revision name %q must start with the service name followed by a hyphen (%q)", name, serviceID+"-")
	case len(name) > maxRevisionNameLen:
		return invalid(field, "revision name %q is longer than %d characters", name, maxRevisionNameLen)
	case !dnsLabel.MatchString(name):
		return invalid(field, "revision name %q may contain only lower-case letters, digits and hyphens, and must not end with a hyphen", name)
	}
	return nil
}

// validateMetadata rejects reserved namespaces and, for annotations, oversized maps.
func validateMetadata(field string, kv map[string]string, annotations bool) error {
	size := 0
	for k, v := range kv {
		if k == "" {
			return invalid(field, "empty key")
		}
		if ns, ok := reservedNamespace(k); ok {
			return invalid(fmt.Sprintf("%s[%q]", field, k), "the %s namespace is not supported by Cloud Run API v2; use the corresponding v2 field", ns)
		}
		size += len(k) + len(v)
	}
	if annotations && size > maxAnnotationBytes {
		return invalid(field, "total size %d bytes exceeds the limit of %d bytes", size, maxAnnotationBytes)
	}
	return nil
}

// reservedNamespace reports the reserved namespace key belongs to, if any.
func reservedNamespace(key string) (string, bool) {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return "", false
	}
	for _, ns := range reservedNamespaces {
		if prefix == ns || strings.HasSuffix(prefix, "."+ns) {
			return ns, true
		}
	}
	return "", false
}

// validateSpec checks the user-settable parts of a service that do not depend on state.
func validateSpec(serviceID string, svc *runpb.Service) error {
	if err := validateMetadata("service.labels", svc.GetLabels(), false); err != nil {
		return err
	}
	if err := validateMetadata("service.annotations", svc.GetAnnotations(), true); err != nil {
		return err
	}
	t := svc.GetTemplate()
	if t == nil {
		return invalid("service.template", "is required")
	}
	if err := validateMetadata("service.template.labels", t.GetLabels(), false); err != nil {
		return err
	}
	if err := validateMetadata("service.template.annotations", t.GetAnnotations(), true); err != nil {
		return err
	}
	if t.GetRevision() != "" {
		if err := validateRevisionName(serviceID, t.GetRevision()); err != nil {
			return err
		}
	}
	if len(t.GetContainers()) == 0 {
		return invalid("service.template.containers", "at least one container is required")
	}
	for i, c := range t.GetContainers() {
		if strings.TrimSpace(c.GetImage()) == "" {
			return invalid(fmt.Sprintf("service.template.containers[%d].image", i), "is required")
		}
	}
	return nil
}

// validateTraffic checks traffic targets and returns them with revision names shortened.
// known reports whether a short revision name exists in the service (or is being created).
func validateTraffic(s *Server, serviceID string, traffic []*runpb.TrafficTarget, known func(string) bool) ([]*runpb.TrafficTarget, error) {
	out := make([]*runpb.TrafficTarget, 0, len(traffic))
	tags := make(map[string]int)
	sum := 0
	for i, in := range traffic {
		field := fmt.Sprintf("service.traffic[%d]", i)
		if in == nil {
			return nil, invalid(field, "is empty")
		}
		t := &runpb.TrafficTarget{Type: in.GetType(), Revision: in.GetRevision(), Percent: in.GetPercent(), Tag: in.GetTag()}
		switch t.Type {
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST:
			if t.Revision != "" {
				return nil, invalid(field+".revision", "must be empty for TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, got %q", t.Revision)
			}
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION:
			if t.Revision == "" {
				return nil, invalid(field+".revision", "is required for TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION")
			}
			if strings.Contains(t.Revision, "/") {
				svcID, rev, err := s.parseRevisionName(t.Revision)
				if err != nil || svcID != serviceID {
					return nil, invalid(field+".revision", "%q is not a revision of service %q", t.Revision, serviceID)
				}
				t.Revision = rev
			}
			if !known(t.Revision) {
				return nil, invalid(field+".revision", "revision %q does not exist in service %q", t.Revision, serviceID)
			}
		default:
			return nil, invalid(field+".type", "must be TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST or TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, got %s", t.Type)
		}
		if t.Percent < 0 || t.Percent > 100 {
			return nil, invalid(field+".percent", "must be between 0 and 100, got %d", t.Percent)
		}
		sum += int(t.Percent)
		if t.Tag != "" {
			if len(t.Tag) > maxTagLen || !dnsLabel.MatchString(t.Tag) {
				return nil, invalid(field+".tag", "%q must start with a lower-case letter, contain only lower-case letters, digits and hyphens, not end with a hyphen, and be at most %d characters", t.Tag, maxTagLen)
			}
			if len(t.Tag)+len(serviceID) > maxTagAndServiceLen {
				return nil, status.Errorf(codes.InvalidArgument, "Combined traffic tag and service name cannot exceed %d characters", maxTagAndServiceLen)
			}
			if j, dup := tags[t.Tag]; dup {
				return nil, invalid(field+".tag", "tag %q is already used by service.traffic[%d]", t.Tag, j)
			}
			tags[t.Tag] = i
		}
		out = append(out, t)
	}
	if sum != 100 {
		return nil, invalid("service.traffic", "the percents must add up to 100, got %d", sum)
	}
	return out, nil
}
