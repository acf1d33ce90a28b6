package gcs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
)

// DefaultWorkers is the number of concurrent copies when Copier.Workers is 0.
const DefaultWorkers = 16

// MetaSourceGeneration is the metadata key on each copy naming the source
// generation it was copied from.
const MetaSourceGeneration = "coalmine-source-generation"

// DefaultMaxAttempts bounds the attempts of each request the Copier makes
// when Copier.MaxAttempts is 0.
const DefaultMaxAttempts = 5

// Copier backs up objects server-side and writes the backup's manifest.
type Copier struct {
	// Client is the Cloud Storage client (JSON API).
	Client *storage.Client
	// Workers is the number of copies in flight; 0 means DefaultWorkers.
	Workers int
	// MaxAttempts bounds the attempts of every request the Copier makes
	// (the client's backoff still applies), so unreachable storage fails a
	// call instead of retrying until its context ends, which the client
	// does by default. 0 means DefaultMaxAttempts; negative leaves the
	// client's retry policy as it is.
	MaxAttempts int
	// WriteTimeout bounds each manifest upload, retries included: the
	// client library retries a single-request upload until its context
	// ends, ignoring MaxAttempts. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout bounds each manifest upload when Copier.WriteTimeout
// is 0.
const DefaultWriteTimeout = time.Minute

// CopyRequest is one chunk of a backup.
type CopyRequest struct {
	// Sources are the objects to back up, processed in this order and, in
	// each source, in name order. The same Sources must be given for every
	// chunk of a backup.
	Sources []Source
	// Bucket and Prefix are the destination: the copy of object N of bucket
	// B goes to Prefix + "objects/" + B + "/" + N. A non-empty Prefix gets a
	// trailing "/" if it lacks one. The backup area must not overlap a
	// source.
	Bucket, Prefix string
	// Cursor is where to resume; the zero Cursor starts the backup.
	Cursor Cursor
	// Budget stops starting new copies once this much time has passed (the
	// copies in flight still finish). At least one copy is started per call.
	// 0 means no limit.
	Budget time.Duration
	// MaxObjects stops after starting this many copies in this call; 0 means
	// no limit.
	MaxObjects int
	// Progress, if set, is called after every finished copy with the number
	// of objects finished in this call and the number of copies started so
	// far in this call (objects are listed as the copy goes, so the final
	// total is known only at the end). Calls come from the worker
	// goroutines, one at a time.
	Progress func(copied, total int)
}

// CopyResult is what one Copy call did.
type CopyResult struct {
	// Entries are the objects this call backed up (copied or found already
	// there), sorted by source then name. Write them with WritePart before
	// persisting Next.
	Entries []Entry
	// Copied counts the copies made; AlreadyThere counts the objects whose
	// copy already existed (412 on the DoesNotExist copy: a redone chunk).
	Copied, AlreadyThere int
	// Vanished counts the listed objects that were deleted before they could
	// be copied; they are not in the backup.
	Vanished int
	// Next is where the next call resumes: every object before it is done.
	// It is valid even when Copy returns an error.
	Next Cursor
	// Done is true when every source has been backed up.
	Done bool
}

type outcome int

const (
	copied outcome = iota
	alreadyThere
	vanished
)

// Copy copies the objects of req.Sources from req.Cursor on into the backup,
// with up to Workers copies in flight, until every source is done, the
// budget is spent or MaxObjects copies were started. Each copy is
// dst.If(DoesNotExist).CopierFrom(src.Generation(listed)); a 412 counts as
// already copied and is recorded from the source's listed attributes. A
// source object deleted after it was listed is skipped; one overwritten
// after it was listed is copied at its new generation.
//
// On error (storage unreachable: transient) the result still holds what was
// done and a valid Next; the objects before Next are in Entries or were
// before req.Cursor.
func (c *Copier) Copy(ctx context.Context, req CopyRequest) (CopyResult, error) {
	res := CopyResult{Next: req.Cursor}
	if err := c.validate(req); err != nil {
		return res, err
	}
	prefix := normPrefix(req.Prefix)
	if req.Cursor.Source == len(req.Sources) {
		res.Done = true
		return res, nil
	}
	if req.Cursor == (Cursor{}) {
		if err := c.writeSources(ctx, req.Bucket, prefix, req.Sources); err != nil {
			return res, err
		}
	}

	workers := c.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	var deadline time.Time
	if req.Budget > 0 {
		deadline = time.Now().Add(req.Budget)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)

	var (
		mu       sync.Mutex // guards tr, res, finished
		tr       tracker
		finished int
	)
	started := 0
	stopped := false
	var listErr error

sources:
	for si := req.Cursor.Source; si < len(req.Sources); si++ {
		src := req.Sources[si]
		q := &storage.Query{Prefix: src.Prefix}
		after := ""
		if si == req.Cursor.Source {
			after = req.Cursor.After
			q.StartOffset = after // inclusive: the name itself is skipped below
		}
		if err := q.SetAttrSelection([]string{"Name", "Size", "CRC32C", "Generation"}); err != nil {
			return res, fmt.Errorf("list %s: %w", gsURL(src.Bucket, src.Prefix), err)
		}
		it := c.bucket(src.Bucket).Objects(gctx, q)
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				listErr = fmt.Errorf("list %s: %w", gsURL(src.Bucket, src.Prefix), err)
				break sources
			}
			if a.Name <= after || a.Prefix != "" {
				continue
			}
			if started > 0 && ((req.MaxObjects > 0 && started >= req.MaxObjects) ||
				(!deadline.IsZero() && !time.Now().Before(deadline))) {
				stopped = true
				break sources
			}
			e := Entry{
				Source:     src.Bucket,
				Name:       a.Name,
				Backup:     backupName(prefix, src.Bucket, a.Name),
				Size:       a.Size,
				CRC32C:     a.CRC32C,
				Generation: a.Generation,
			}
			mu.Lock()
			idx := tr.add(si, a.Name)
			mu.Unlock()
			started++
			g.Go(func() error {
				e, out, err := c.copyOne(gctx, req.Bucket, e)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				tr.finish(idx)
				switch out {
				case copied:
					res.Copied++
					res.Entries = append(res.Entries, e)
				case alreadyThere:
					res.AlreadyThere++
					res.Entries = append(res.Entries, e)
				case vanished:
					res.Vanished++
				}
				finished++
				if req.Progress != nil {
					req.Progress(finished, tr.len())
				}
				return nil
			})
		}
	}
	waitErr := g.Wait()

	mu.Lock()
	defer mu.Unlock()
	sort.Slice(res.Entries, func(i, j int) bool {
		a, b := res.Entries[i], res.Entries[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Name < b.Name
	})
	res.Next = tr.next(req.Cursor)
	if waitErr != nil {
		return res, fmt.Errorf("back up to %s: %w", gsURL(req.Bucket, prefix), waitErr)
	}
	if listErr != nil {
		return res, fmt.Errorf("back up to %s: %w", gsURL(req.Bucket, prefix), listErr)
	}
	if !stopped {
		res.Done = true
		res.Next = Cursor{Source: len(req.Sources)}
	}
	return res, nil
}

// copyOne copies one listed object, following it to a newer generation if
// it was overwritten after the listing.
func (c *Copier) copyOne(ctx context.Context, dstBucket string, e Entry) (Entry, outcome, error) {
	const maxChases = 3
	for chase := 0; ; chase++ {
		src := c.Client.Bucket(e.Source).Object(e.Name).Generation(e.Generation)
		dst := c.object(dstBucket, e.Backup).If(storage.Conditions{DoesNotExist: true})
		cp := dst.CopierFrom(src)
		cp.Metadata = map[string]string{MetaSourceGeneration: strconv.FormatInt(e.Generation, 10)}
		_, err := cp.Run(ctx)
		switch {
		case err == nil:
			return e, copied, nil
		case isPreconditionFailed(err):
			// Copied before (a redone chunk). Record the copy that is there,
			// not the source as listed now: the source may have changed
			// since, and the backup holds what was copied then.
			a, aerr := c.object(dstBucket, e.Backup).Attrs(ctx)
			if aerr != nil {
				return e, 0, fmt.Errorf("stat existing copy %s: %w", gsURL(dstBucket, e.Backup), aerr)
			}
			e.Size, e.CRC32C = a.Size, a.CRC32C
			if g, perr := strconv.ParseInt(a.Metadata[MetaSourceGeneration], 10, 64); perr == nil {
				e.Generation = g
			}
			return e, alreadyThere, nil
		case !isNotExist(err) || chase == maxChases:
			return e, 0, fmt.Errorf("copy %s to %s: %w", gsURL(e.Source, e.Name), gsURL(dstBucket, e.Backup), err)
		}
		// The listed generation is gone: deleted, or overwritten since.
		a, err := c.object(e.Source, e.Name).Attrs(ctx)
		if isNotExist(err) {
			return e, vanished, nil
		}
		if err != nil {
			return e, 0, fmt.Errorf("stat %s: %w", gsURL(e.Source, e.Name), err)
		}
		e.Size, e.CRC32C, e.Generation = a.Size, a.CRC32C, a.Generation
	}
}

func (c *Copier) validate(req CopyRequest) error {
	switch {
	case c.Client == nil:
		return fmt.Errorf("copier has no storage client: %w", ErrInvalid)
	case req.Bucket == "":
		return fmt.Errorf("no backup bucket: %w", ErrInvalid)
	case len(req.Sources) == 0:
		return fmt.Errorf("no sources to back up: %w", ErrInvalid)
	case req.Cursor.Source < 0 || req.Cursor.Source > len(req.Sources):
		return fmt.Errorf("cursor source %d out of range for %d sources: %w", req.Cursor.Source, len(req.Sources), ErrInvalid)
	}
	prefix := normPrefix(req.Prefix)
	for _, s := range req.Sources {
		if s.Bucket == "" {
			return fmt.Errorf("source with no bucket: %w", ErrInvalid)
		}
		if s.Bucket == req.Bucket && (strings.HasPrefix(prefix, s.Prefix) || strings.HasPrefix(s.Prefix, prefix)) {
			return fmt.Errorf("backup area %s overlaps source %s: %w", gsURL(req.Bucket, prefix), gsURL(s.Bucket, s.Prefix), ErrInvalid)
		}
	}
	return nil
}

// bucket and object return handles with the Copier's attempt bound.
func (c *Copier) bucket(name string) *storage.BucketHandle {
	b := c.Client.Bucket(name)
	if n := c.maxAttempts(); n > 0 {
		b = b.Retryer(storage.WithMaxAttempts(n))
	}
	return b
}

func (c *Copier) object(bucket, name string) *storage.ObjectHandle {
	return c.bucket(bucket).Object(name)
}

func (c *Copier) maxAttempts() int {
	if c.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return c.MaxAttempts
}

// tracker turns out-of-order completions into a cursor: the position before
// which every started copy has finished.
type tracker struct {
	pos  []Cursor // position of each started object, in listing order
	done []bool
	low  int // pos[:low] are all finished
}

func (t *tracker) add(source int, name string) int {
	t.pos = append(t.pos, Cursor{Source: source, After: name})
	t.done = append(t.done, false)
	return len(t.pos) - 1
}

func (t *tracker) finish(i int) {
	t.done[i] = true
	for t.low < len(t.done) && t.done[t.low] {
		t.low++
	}
}

func (t *tracker) len() int { return len(t.pos) }

// next is the cursor after the finished prefix, or start if none finished.
func (t *tracker) next(start Cursor) Cursor {
	if t.low == 0 {
		return start
	}
	return t.pos[t.low-1]
}
