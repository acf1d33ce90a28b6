package gcs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
)

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// DryRun computes the plan and changes nothing.
	DryRun bool
	// DeleteNew deletes the source objects that are not in the backup
	// (written after it). Without it they are only listed in the plan.
	DeleteNew bool
}

// RestorePlan is what Restore does (or, with DryRun, would do). Each list
// holds gs://bucket/name URLs of source objects, sorted.
type RestorePlan struct {
	// Restore are the objects copied back from the backup: missing, or
	// different from the backup (size or CRC32C).
	Restore []string `json:"restore,omitempty"`
	// Unchanged are the objects that already match the backup.
	Unchanged []string `json:"unchanged,omitempty"`
	// New are the objects under the manifest's sources that are not in the
	// backup; deleted only with DeleteNew.
	New []string `json:"new,omitempty"`
}

type restoreItem struct {
	e   Entry
	gen int64 // current source generation; 0 = missing
}

type newItem struct {
	bucket, name string
	gen          int64
}

// Restore puts the backup of m back over its sources: each entry's backup
// object is copied server-side over the source object it came from, unless
// the source already has the same size and CRC32C. Source objects under
// m.Sources that are not in the manifest are listed as New and deleted only
// with opts.DeleteNew (which needs m.Sources). With opts.DryRun nothing
// changes.
//
// Each write carries a precondition on the generation seen while planning
// (DoesNotExist for a missing object), so a retried request cannot apply
// twice and an object written concurrently is not clobbered: that fails the
// call (transient; run Restore again to replan). A copy whose result does
// not have the manifest's CRC32C fails with ErrMismatch. Retries follow the
// client's policy; bound them with ctx.
func Restore(ctx context.Context, client *storage.Client, m Manifest, opts RestoreOptions) (RestorePlan, error) {
	var plan RestorePlan
	if client == nil || m.Bucket == "" {
		return plan, fmt.Errorf("restore backup: no client or no backup bucket: %w", ErrInvalid)
	}
	if opts.DeleteNew && len(m.Sources) == 0 {
		return plan, fmt.Errorf("restore backup %s: the manifest names no sources, so new objects cannot be found: %w", gsURL(m.Bucket, m.Prefix), ErrInvalid)
	}
	prefix := normPrefix(m.Prefix)

	// Plan: compare every entry with its source object.
	var (
		mu        sync.Mutex
		toRestore []restoreItem
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for _, e := range m.Entries {
		g.Go(func() error {
			a, err := client.Bucket(e.Source).Object(e.Name).Attrs(gctx)
			if err != nil && !isNotExist(err) {
				return fmt.Errorf("stat %s: %w", gsURL(e.Source, e.Name), err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				toRestore = append(toRestore, restoreItem{e: e})
			case a.Size == e.Size && a.CRC32C == e.CRC32C:
				plan.Unchanged = append(plan.Unchanged, gsURL(e.Source, e.Name))
			default:
				toRestore = append(toRestore, restoreItem{e: e, gen: a.Generation})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return plan, fmt.Errorf("plan restore of %s: %w", gsURL(m.Bucket, prefix), err)
	}
	for _, it := range toRestore {
		plan.Restore = append(plan.Restore, gsURL(it.e.Source, it.e.Name))
	}

	newItems, err := findNew(ctx, client, m, prefix)
	if err != nil {
		return plan, fmt.Errorf("plan restore of %s: %w", gsURL(m.Bucket, prefix), err)
	}
	for _, n := range newItems {
		plan.New = append(plan.New, gsURL(n.bucket, n.name))
	}
	sort.Strings(plan.Restore)
	sort.Strings(plan.Unchanged)
	sort.Strings(plan.New)
	if opts.DryRun {
		return plan, nil
	}

	// Apply.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for _, it := range toRestore {
		g.Go(func() error { return restoreOne(gctx, client, m.Bucket, it) })
	}
	if opts.DeleteNew {
		for _, n := range newItems {
			g.Go(func() error {
				err := client.Bucket(n.bucket).Object(n.name).If(storage.Conditions{GenerationMatch: n.gen}).Delete(gctx)
				if err != nil && !isNotExist(err) {
					return fmt.Errorf("delete new object %s: %w", gsURL(n.bucket, n.name), err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return plan, fmt.Errorf("restore backup %s: %w", gsURL(m.Bucket, prefix), err)
	}
	return plan, nil
}

func restoreOne(ctx context.Context, client *storage.Client, backupBucket string, it restoreItem) error {
	cond := storage.Conditions{DoesNotExist: true}
	if it.gen != 0 {
		cond = storage.Conditions{GenerationMatch: it.gen}
	}
	dst := client.Bucket(it.e.Source).Object(it.e.Name).If(cond)
	src := client.Bucket(backupBucket).Object(it.e.Backup)
	a, err := dst.CopierFrom(src).Run(ctx)
	if err != nil {
		return fmt.Errorf("restore %s from %s: %w", gsURL(it.e.Source, it.e.Name), gsURL(backupBucket, it.e.Backup), err)
	}
	if a.Size != it.e.Size || a.CRC32C != it.e.CRC32C {
		return fmt.Errorf("restored %s has crc32c %08x (%d bytes), manifest says %08x (%d bytes): %w",
			gsURL(it.e.Source, it.e.Name), a.CRC32C, a.Size, it.e.CRC32C, it.e.Size, ErrMismatch)
	}
	return nil
}

// findNew lists the objects under m.Sources that are not in the manifest,
// leaving out the backup's own area.
func findNew(ctx context.Context, client *storage.Client, m Manifest, prefix string) ([]newItem, error) {
	type key struct{ bucket, name string }
	inBackup := make(map[key]bool, len(m.Entries))
	for _, e := range m.Entries {
		inBackup[key{e.Source, e.Name}] = true
	}
	seen := map[key]bool{}
	var out []newItem
	for _, s := range m.Sources {
		q := &storage.Query{Prefix: s.Prefix}
		if err := q.SetAttrSelection([]string{"Name", "Generation"}); err != nil {
			return nil, fmt.Errorf("list %s: %w", gsURL(s.Bucket, s.Prefix), err)
		}
		it := client.Bucket(s.Bucket).Objects(ctx, q)
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gsURL(s.Bucket, s.Prefix), err)
			}
			k := key{s.Bucket, a.Name}
			if a.Prefix != "" || inBackup[k] || seen[k] || (s.Bucket == m.Bucket && strings.HasPrefix(a.Name, prefix)) {
				continue
			}
			seen[k] = true
			out = append(out, newItem{bucket: s.Bucket, name: a.Name, gen: a.Generation})
		}
	}
	return out, nil
}
