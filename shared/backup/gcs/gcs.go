// Package gcs backs up a service's Cloud Storage data before a canary deploy
// and restores it on demand.
//
// A backup copies every object of the policy's sources (bucket + name prefix)
// into a backup bucket under a per-rollout prefix, server-side
// (objects.rewrite: the bytes never pass through the function):
//
//	PREFIX/objects/SRCBUCKET/SRCNAME   the copies
//	PREFIX/manifest/sources.json       the sources, written by the first Copy
//	PREFIX/manifest/part-NNNNNN.json   one manifest part per chunk (WritePart)
//	PREFIX/manifest.json               the merged manifest (Finish)
//
// A Cloud Run function has minutes, not hours, so Copy works in chunks: it
// copies for a time budget and returns a Cursor to persist; the next
// invocation resumes from it. Every copy is made with a DoesNotExist
// precondition, so a chunk that is redone (a crashed worker, a redelivered
// message) costs one refused request (412) per object already copied and
// never overwrites a copy. The caller writes a chunk's manifest part BEFORE
// persisting its cursor; then every object before a persisted cursor is in
// some part.
//
// Errors: storage unreachable or answering 5xx after the client's retries is
// a plain (transient) error: return it so the message is redelivered. Errors
// wrapping ErrMismatch, ErrConflict or ErrInvalid are permanent: retrying
// gives the same answer.
package gcs

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

var (
	// ErrMismatch means a backup object is missing or differs from its
	// manifest entry (size, CRC32C, or the CRC32C of its bytes). Permanent.
	ErrMismatch = errors.New("backup does not match its manifest")
	// ErrConflict means two records of the same backup disagree: manifest
	// parts with different entries for one backup object, or a backup
	// prefix already used for other sources. Permanent.
	ErrConflict = errors.New("backup records disagree")
	// ErrInvalid means a request can never succeed as given (no client,
	// no sources, a backup prefix overlapping a source). Permanent.
	ErrInvalid = errors.New("invalid backup request")
)

// Source is one set of objects to back up: every object of Bucket whose name
// starts with Prefix (empty: the whole bucket).
type Source struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix,omitempty"`
}

// Entry is one backed-up object, as listed in the source when it was copied.
type Entry struct {
	// Source is the source bucket.
	Source string `json:"src"`
	// Name is the source object's name.
	Name string `json:"name"`
	// Backup is the copy's object name in the backup bucket.
	Backup string `json:"bak"`
	// Size is the object's size in bytes.
	Size int64 `json:"size"`
	// CRC32C is the object's CRC32C (Castagnoli) checksum.
	CRC32C uint32 `json:"crc"`
	// Generation is the source generation that was copied.
	Generation int64 `json:"gen"`
}

// Cursor is where a chunked Copy resumes: every object of the sources before
// Sources[Source], and every object of Sources[Source] whose name is <= After,
// is done. The zero Cursor is the start; Source == len(Sources) is the end.
// Its JSON form is small enough for a Cloud Run annotation.
type Cursor struct {
	Source int    `json:"s,omitempty"`
	After  string `json:"a,omitempty"`
}

// Manifest is the merged record of a backup: which objects it holds and what
// they must contain.
type Manifest struct {
	// Bucket and Prefix locate the backup.
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	// Sources are the backed-up sources, from PREFIX/manifest/sources.json
	// (empty if Copy never ran for this prefix). Restore needs them to find
	// objects written after the backup.
	Sources []Source `json:"sources,omitempty"`
	// Entries are sorted by Backup name, one per backup object.
	Entries []Entry `json:"entries"`
}

// Bytes is the total size of the backed-up objects.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// normPrefix makes a non-empty prefix end with "/".
func normPrefix(p string) string {
	if p != "" && !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

// backupName is where the copy of srcBucket/name goes.
func backupName(prefix, srcBucket, name string) string {
	return prefix + "objects/" + srcBucket + "/" + name
}

func gsURL(bucket, name string) string { return "gs://" + bucket + "/" + name }

func errorCode(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

// isPreconditionFailed reports a 412: with DoesNotExist, the object exists.
func isPreconditionFailed(err error) bool {
	return errorCode(err) == http.StatusPreconditionFailed
}

func isNotExist(err error) bool {
	return errors.Is(err, storage.ErrObjectNotExist) || errorCode(err) == http.StatusNotFound
}

// summarize names the first 10 items, sorted, and counts the rest.
func summarize(items []string) string {
	sort.Strings(items)
	const show = 10
	if len(items) <= show {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:show], "; "), len(items)-show)
}
