package events

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Actions carried by an Artifact Registry notification.
const (
	// ActionInsert: an image was pushed, or a tag was added to an image.
	ActionInsert = "INSERT"
	// ActionDelete: an image or a tag was deleted.
	ActionDelete = "DELETE"
)

const (
	artifactSource = "gcr notification"
	imageRefSource = "image reference"
	// maxRepositoryLen is the longest repository name a registry accepts (HOST/PATH), as
	// in the Docker distribution reference grammar.
	maxRepositoryLen = 255
)

var (
	// registryHostPattern is a registry host: DNS-style components and an optional port.
	registryHostPattern = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]{1,5})?$`)
	// repositoryPathPattern is one path component of a repository.
	repositoryPathPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// imageTagPattern is an image tag.
	imageTagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// imageDigestPattern is the only digest form accepted: sha256 with 64 lowercase hex digits.
	imageDigestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// ArtifactNotification is the message Artifact Registry (and Container Registry) publishes
// on the `gcr` topic when an image is pushed, tagged or deleted. Digest and Tag are full
// references (HOST/PATH@sha256:HEX and HOST/PATH:TAG); at least one of them is set.
type ArtifactNotification struct {
	// Action is ActionInsert or ActionDelete.
	Action string `json:"action"`
	// Digest is the image reference by digest, HOST/PATH@sha256:HEX; empty for a tag deletion.
	Digest string `json:"digest,omitempty"`
	// Tag is the tag reference, HOST/PATH:TAG; empty for an untagged push.
	Tag string `json:"tag,omitempty"`
}

// DecodeArtifact decodes and validates the data of a `gcr` notification. Unknown JSON
// fields are ignored. Every error is a *FieldError naming the field.
func DecodeArtifact(data []byte) (ArtifactNotification, error) {
	var n ArtifactNotification
	if err := json.Unmarshal(data, &n); err != nil {
		return ArtifactNotification{}, jsonFieldError(artifactSource, "", err)
	}
	switch n.Action {
	case ActionInsert, ActionDelete:
	case "":
		return ArtifactNotification{}, &FieldError{Source: artifactSource, Field: "action", Problem: "missing; want INSERT or DELETE"}
	default:
		return ArtifactNotification{}, &FieldError{
			Source: artifactSource, Field: "action",
			Problem: fmt.Sprintf("unknown action %s; want INSERT or DELETE", quoteForError(n.Action)),
		}
	}
	if n.Digest == "" && n.Tag == "" {
		return ArtifactNotification{}, &FieldError{
			Source: artifactSource, Field: "digest",
			Problem: `missing, and "tag" is missing too; one of them is required`,
		}
	}
	if _, err := n.Image(); err != nil {
		return ArtifactNotification{}, err
	}
	return n, nil
}

// Image returns the image the notification is about, combining the digest and the tag
// references. Every error is a *FieldError naming the field.
func (n ArtifactNotification) Image() (ImageRef, error) {
	var byDigest, byTag ImageRef
	if n.Digest != "" {
		ref, part, problem := parseImageRef(n.Digest)
		if problem != "" {
			return ImageRef{}, &FieldError{
				Source: artifactSource, Field: "digest",
				Problem: fmt.Sprintf("%s is not a full reference HOST/PATH@sha256:<64 hex>: %s: %s", quoteForError(n.Digest), part, problem),
			}
		}
		if ref.Digest == "" || ref.Tag != "" {
			return ImageRef{}, &FieldError{
				Source: artifactSource, Field: "digest",
				Problem: fmt.Sprintf("%s is not a full reference HOST/PATH@sha256:<64 hex>", quoteForError(n.Digest)),
			}
		}
		byDigest = ref
	}
	if n.Tag != "" {
		ref, part, problem := parseImageRef(n.Tag)
		if problem != "" {
			return ImageRef{}, &FieldError{
				Source: artifactSource, Field: "tag",
				Problem: fmt.Sprintf("%s is not a full reference HOST/PATH:TAG: %s: %s", quoteForError(n.Tag), part, problem),
			}
		}
		if ref.Tag == "" || ref.Digest != "" {
			return ImageRef{}, &FieldError{
				Source: artifactSource, Field: "tag",
				Problem: fmt.Sprintf("%s is not a full reference HOST/PATH:TAG", quoteForError(n.Tag)),
			}
		}
		byTag = ref
	}
	switch {
	case n.Digest == "" && n.Tag == "":
		return ImageRef{}, &FieldError{Source: artifactSource, Field: "digest", Problem: `missing, and "tag" is missing too; one of them is required`}
	case n.Tag == "":
		return byDigest, nil
	case n.Digest == "":
		return byTag, nil
	case byDigest.Repository != byTag.Repository:
		return ImageRef{}, &FieldError{
			Source: artifactSource, Field: "tag",
			Problem: fmt.Sprintf("repository %s differs from the digest's %s", quoteForError(byTag.Repository), quoteForError(byDigest.Repository)),
		}
	default:
		return ImageRef{Repository: byDigest.Repository, Tag: byTag.Tag, Digest: byDigest.Digest}, nil
	}
}

// ImageRef is a parsed container image reference.
type ImageRef struct {
	// Repository is HOST/PATH, without tag or digest, e.g.
	// "europe-west1-docker.pkg.dev/my-project/apps/api".
	Repository string
	// Tag is the tag ("1.1"), or empty.
	Tag string
	// Digest is "sha256:<64 lowercase hex>", or empty.
	Digest string
}

// ParseImageRef parses a full image reference: HOST/PATH@sha256:HEX, HOST/PATH:TAG or
// HOST/PATH:TAG@sha256:HEX. HOST must look like a registry host (contain a dot or a port,
// or be "localhost"), as in the Docker reference grammar, and may carry a port
// ("localhost:5000/a/b:tag"). At least a tag or a digest is required; only sha256 digests
// are accepted. Every error is a *FieldError with Field "repository", "tag" or "digest".
func ParseImageRef(s string) (ImageRef, error) {
	ref, field, problem := parseImageRef(s)
	if problem != "" {
		return ImageRef{}, &FieldError{Source: imageRefSource, Field: field, Problem: quoteForError(s) + ": " + problem}
	}
	return ref, nil
}

// parseImageRef parses s like ParseImageRef; on failure it returns the component at fault
// ("repository", "tag" or "digest") and the problem.
func parseImageRef(s string) (ref ImageRef, field, problem string) {
	if s == "" {
		return ImageRef{}, "repository", "empty reference"
	}
	name, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest && !imageDigestPattern.MatchString(digest) {
		return ImageRef{}, "digest", "want sha256:<64 lowercase hex digits>"
	}
	lastSlash := strings.LastIndexByte(name, '/')
	if lastSlash < 0 {
		return ImageRef{}, "repository", `want HOST/PATH, found no "/"`
	}
	repo, tag := name, ""
	if i := strings.LastIndexByte(name[lastSlash+1:], ':'); i >= 0 {
		repo, tag = name[:lastSlash+1+i], name[lastSlash+1+i+1:]
		if !imageTagPattern.MatchString(tag) {
			return ImageRef{}, "tag", "want 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
		}
	}
	if !hasDigest && tag == "" {
		return ImageRef{}, "tag", "reference has neither a tag nor a digest"
	}
	if problem := repositoryProblem(repo); problem != "" {
		return ImageRef{}, "repository", problem
	}
	return ImageRef{Repository: repo, Tag: tag, Digest: digest}, "", ""
}

// String returns the canonical reference: Repository@Digest when the digest is known
// (pinning the exact image), else Repository:Tag, else the bare Repository.
func (r ImageRef) String() string {
	switch {
	case r.Digest != "":
		return r.Repository + "@" + r.Digest
	case r.Tag != "":
		return r.Repository + ":" + r.Tag
	default:
		return r.Repository
	}
}

// repositoryProblem says what is wrong with a HOST/PATH repository, or returns "".
func repositoryProblem(repo string) string {
	if len(repo) > maxRepositoryLen {
		return fmt.Sprintf("repository longer than %d characters", maxRepositoryLen)
	}
	host, path, ok := strings.Cut(repo, "/")
	if !ok || path == "" {
		return "want HOST/PATH, found no path"
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Sprintf("registry host %s must contain a dot or a port, or be localhost", quoteForError(host))
	}
	if !registryHostPattern.MatchString(host) {
		return fmt.Sprintf("invalid registry host %s", quoteForError(host))
	}
	for _, component := range strings.Split(path, "/") {
		if !repositoryPathPattern.MatchString(component) {
			return fmt.Sprintf("invalid path component %s: want lowercase letters and digits separated by '.', '_', '__' or '-'", quoteForError(component))
		}
	}
	return ""
}

// quoteForError quotes s for an error message, shortening it so that a huge payload does
// not flood the logs.
func quoteForError(s string) string {
	const maxLen = 160
	if len(s) > maxLen {
		return fmt.Sprintf("%q… (%d bytes)", s[:maxLen], len(s))
	}
	return fmt.Sprintf("%q", s)
}
