package gcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"sort"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// part is the JSON form of a manifest part.
type part struct {
	Seq     int     `json:"seq"`
	Entries []Entry `json:"entries"`
}

func manifestName(prefix string) string { return prefix + "manifest.json" }
func sourcesName(prefix string) string  { return prefix + "manifest/sources.json" }
func partsPrefix(prefix string) string  { return prefix + "manifest/part-" }
func partName(prefix string, seq int) string {
	return fmt.Sprintf("%s%06d.json", partsPrefix(prefix), seq)
}

// WritePart writes the manifest part of one chunk, as object
// prefix+"manifest/part-%06d.json", with a DoesNotExist precondition: a part
// is never overwritten. If the part exists with the same content (a
// redelivered chunk), that is fine. If it exists with different content (a
// chunk redone with another extent after a crash between WritePart and
// persisting the cursor), the entries go to a sibling
// "part-%06d.XXXXXXXX.json" named by their checksum, so neither loses
// entries; Finish merges all parts.
func (c *Copier) WritePart(ctx context.Context, bucket, prefix string, seq int, entries []Entry) error {
	prefix = normPrefix(prefix)
	sorted := append([]Entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Backup < sorted[j].Backup })
	data, err := json.Marshal(part{Seq: seq, Entries: sorted})
	if err != nil {
		return fmt.Errorf("encode manifest part %d: %w", seq, err)
	}
	name := partName(prefix, seq)
	err = c.writeOnce(ctx, bucket, name, data)
	if !isPreconditionFailed(err) {
		if err != nil {
			return fmt.Errorf("write manifest part %s: %w", gsURL(bucket, name), err)
		}
		return nil
	}
	existing, err := c.readAll(ctx, bucket, name)
	if err != nil {
		return fmt.Errorf("read existing manifest part %s: %w", gsURL(bucket, name), err)
	}
	if bytes.Equal(existing, data) {
		return nil
	}
	alt := fmt.Sprintf("%s%06d.%08x.json", partsPrefix(prefix), seq, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	if err := c.writeOnce(ctx, bucket, alt, data); err != nil && !isPreconditionFailed(err) {
		return fmt.Errorf("write manifest part %s: %w", gsURL(bucket, alt), err)
	}
	return nil
}

// Finish merges every manifest part of the backup into
// prefix+"manifest.json" and returns the manifest. Entries for the same
// backup object are merged if identical; different entries for one object
// (its source changed between a crashed chunk and its redo) fail with
// ErrConflict. Finish can be repeated: it rewrites manifest.json from the
// parts.
func (c *Copier) Finish(ctx context.Context, bucket, prefix string) (Manifest, error) {
	prefix = normPrefix(prefix)
	m := Manifest{Bucket: bucket, Prefix: prefix}
	q := &storage.Query{Prefix: partsPrefix(prefix)}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return m, fmt.Errorf("list manifest parts: %w", err)
	}
	var names []string
	it := c.bucket(bucket).Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("list manifest parts under %s: %w", gsURL(bucket, q.Prefix), err)
		}
		names = append(names, a.Name)
	}
	sort.Strings(names)

	byBackup := map[string]Entry{}
	var conflicts []string
	for _, name := range names {
		data, err := c.readAll(ctx, bucket, name)
		if err != nil {
			return m, fmt.Errorf("read manifest part %s: %w", gsURL(bucket, name), err)
		}
		var p part
		if err := json.Unmarshal(data, &p); err != nil {
			return m, fmt.Errorf("decode manifest part %s: %v: %w", gsURL(bucket, name), err, ErrConflict)
		}
		for _, e := range p.Entries {
			prev, ok := byBackup[e.Backup]
			if ok && prev != e {
				conflicts = append(conflicts, fmt.Sprintf("%s: generation %d crc32c %08x size %d vs generation %d crc32c %08x size %d (%s)",
					e.Backup, prev.Generation, prev.CRC32C, prev.Size, e.Generation, e.CRC32C, e.Size, name))
				continue
			}
			byBackup[e.Backup] = e
		}
	}
	if len(conflicts) > 0 {
		return m, fmt.Errorf("merge manifest of %s: %d conflicting entries: %s: %w",
			gsURL(bucket, prefix), len(conflicts), summarize(conflicts), ErrConflict)
	}
	m.Entries = make([]Entry, 0, len(byBackup))
	for _, e := range byBackup {
		m.Entries = append(m.Entries, e)
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Backup < m.Entries[j].Backup })

	sources, err := c.readSources(ctx, bucket, prefix)
	if err != nil && !isNotExist(err) {
		return m, fmt.Errorf("read backup sources %s: %w", gsURL(bucket, sourcesName(prefix)), err)
	}
	m.Sources = sources

	data, err := json.Marshal(m)
	if err != nil {
		return m, fmt.Errorf("encode manifest: %w", err)
	}
	if err := c.writeReplace(ctx, bucket, manifestName(prefix), data); err != nil {
		return m, fmt.Errorf("write manifest %s: %w", gsURL(bucket, manifestName(prefix)), err)
	}
	return m, nil
}

// ReadManifest reads the manifest written by Finish.
func (c *Copier) ReadManifest(ctx context.Context, bucket, prefix string) (Manifest, error) {
	prefix = normPrefix(prefix)
	name := manifestName(prefix)
	data, err := c.readAll(ctx, bucket, name)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", gsURL(bucket, name), err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest %s: %v: %w", gsURL(bucket, name), err, ErrConflict)
	}
	return m, nil
}

// writeSources records the backup's sources once; a backup prefix already
// used for other sources fails with ErrConflict.
func (c *Copier) writeSources(ctx context.Context, bucket, prefix string, sources []Source) error {
	name := sourcesName(prefix)
	data, err := json.Marshal(sources)
	if err != nil {
		return fmt.Errorf("encode backup sources: %w", err)
	}
	err = c.writeOnce(ctx, bucket, name, data)
	if err == nil {
		return nil
	}
	if !isPreconditionFailed(err) {
		return fmt.Errorf("write backup sources %s: %w", gsURL(bucket, name), err)
	}
	existing, err := c.readSources(ctx, bucket, prefix)
	if err != nil {
		return fmt.Errorf("read backup sources %s: %w", gsURL(bucket, name), err)
	}
	if !reflect.DeepEqual(existing, sources) {
		return fmt.Errorf("backup %s was started for sources %v, not %v: %w", gsURL(bucket, prefix), existing, sources, ErrConflict)
	}
	return nil
}

func (c *Copier) readSources(ctx context.Context, bucket, prefix string) ([]Source, error) {
	data, err := c.readAll(ctx, bucket, sourcesName(prefix))
	if err != nil {
		return nil, err
	}
	var s []Source
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %v: %w", sourcesName(prefix), err, ErrConflict)
	}
	return s, nil
}

// writeOnce creates an object with DoesNotExist; a 412 error means it exists.
func (c *Copier) writeOnce(ctx context.Context, bucket, name string, data []byte) error {
	return c.write(ctx, c.object(bucket, name).If(storage.Conditions{DoesNotExist: true}), data)
}

// writeReplace creates or replaces an object, with a generation
// precondition so the client may retry the write.
func (c *Copier) writeReplace(ctx context.Context, bucket, name string, data []byte) error {
	obj := c.object(bucket, name)
	a, err := obj.Attrs(ctx)
	switch {
	case isNotExist(err):
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	case err != nil:
		return err
	default:
		obj = obj.If(storage.Conditions{GenerationMatch: a.Generation})
	}
	return c.write(ctx, obj, data)
}

func (c *Copier) write(ctx context.Context, obj *storage.ObjectHandle, data []byte) error {
	timeout := c.WriteTimeout
	if timeout <= 0 {
		timeout = DefaultWriteTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel() // also abandons the upload if Write fails
	// Remember the last failed attempt: when the timeout ends the retries,
	// the Writer reports only the context's error.
	var (
		mu   sync.Mutex
		last error
	)
	obj = obj.Retryer(storage.WithErrorFunc(func(err error) bool {
		mu.Lock()
		last = err
		mu.Unlock()
		return storage.ShouldRetry(err)
	}))
	w := obj.NewWriter(ctx)
	w.ContentType = "application/json"
	// One request (the library buffers ChunkSize bytes, 16 MiB by default,
	// and retries a single-request upload only when the object fits).
	w.ChunkSize = uploadChunkSize(len(data))
	_, err := w.Write(data)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	mu.Lock()
	defer mu.Unlock()
	if err != nil && ctx.Err() != nil && last != nil {
		return fmt.Errorf("upload not done within %v: %w; last attempt: %w", timeout, err, last)
	}
	return err
}

func (c *Copier) readAll(ctx context.Context, bucket, name string) ([]byte, error) {
	r, err := c.object(bucket, name).NewReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// uploadChunkSize is the smallest valid chunk size (a multiple of 256 KiB)
// that holds n bytes in one request, at most the library's 16 MiB default.
func uploadChunkSize(n int) int {
	const quantum, max = 256 << 10, 16 << 20
	size := (n/quantum + 1) * quantum
	if size > max {
		return max
	}
	return size
}
