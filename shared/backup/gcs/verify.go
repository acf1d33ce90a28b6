package gcs

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
)

// verifyWorkers is the number of objects Verify and Restore check at once.
const verifyWorkers = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Verify checks that every entry of m has its backup object in m.Bucket with
// the entry's size and CRC32C, twice: from the object's attributes, and by
// reading its bytes and computing their CRC32C. The second check costs a
// download of the whole backup but catches content that no longer matches
// its stored attributes (the local emulator's CorruptObject, or a
// filesystem-backed emulator edited on disk); it reads the stored bytes
// (ReadCompressed), so gzip-encoded objects are not transcoded.
//
// Differences fail with an error wrapping ErrMismatch that names the first
// 10 objects and counts the rest. Objects under the backup prefix that are
// not in the manifest (a copy whose chunk never wrote its part, the manifest
// files themselves) are ignored. Storage errors are returned as they are
// (transient). Retries follow the client's policy; bound them with ctx.
func Verify(ctx context.Context, client *storage.Client, m Manifest) error {
	if client == nil || m.Bucket == "" {
		return fmt.Errorf("verify backup: no client or no backup bucket: %w", ErrInvalid)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	var (
		mu       sync.Mutex
		problems []string
	)
	for _, e := range m.Entries {
		g.Go(func() error {
			problem, err := verifyOne(gctx, client, m.Bucket, e)
			if err != nil {
				return err
			}
			if problem != "" {
				mu.Lock()
				problems = append(problems, gsURL(m.Bucket, e.Backup)+": "+problem)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("verify backup %s: %w", gsURL(m.Bucket, m.Prefix), err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("verify backup %s: %d of %d objects differ: %s: %w",
			gsURL(m.Bucket, m.Prefix), len(problems), len(m.Entries), summarize(problems), ErrMismatch)
	}
	return nil
}

// verifyOne returns a description of how the backup object differs from e,
// or "" if it matches.
func verifyOne(ctx context.Context, client *storage.Client, bucket string, e Entry) (string, error) {
	obj := client.Bucket(bucket).Object(e.Backup)
	a, err := obj.Attrs(ctx)
	if isNotExist(err) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", gsURL(bucket, e.Backup), err)
	}
	if a.Size != e.Size {
		return fmt.Sprintf("size %d, manifest says %d", a.Size, e.Size), nil
	}
	if a.CRC32C != e.CRC32C {
		return fmt.Sprintf("crc32c %08x, manifest says %08x", a.CRC32C, e.CRC32C), nil
	}
	r, err := obj.Generation(a.Generation).ReadCompressed(true).NewReader(ctx, storage.WithDisableReaderChecksum())
	if isNotExist(err) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", gsURL(bucket, e.Backup), err)
	}
	defer r.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, r)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", gsURL(bucket, e.Backup), err)
	}
	if n != e.Size || h.Sum32() != e.CRC32C {
		return fmt.Sprintf("content has crc32c %08x (%d bytes), manifest says %08x (%d bytes)", h.Sum32(), n, e.CRC32C, e.Size), nil
	}
	return "", nil
}
