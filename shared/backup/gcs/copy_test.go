package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func roundTrip(t *testing.T, c Cursor) Cursor {
	t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var out Cursor
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopyTwoSources(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 150)
	ctx := context.Background()
	c := e.copier(8)
	const prefix = "rollouts/r-1/"

	var mu sync.Mutex
	var progress [][2]int
	res, err := c.Copy(ctx, CopyRequest{
		Sources: l.sources, Bucket: backupBucket, Prefix: prefix,
		Progress: func(copied, total int) {
			mu.Lock()
			progress = append(progress, [2]int{copied, total})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if got, want := [4]any{res.Done, res.Copied, res.AlreadyThere, res.Next}, [4]any{true, l.total(), 0, Cursor{Source: 2}}; got != want {
		t.Errorf("result (done, copied, already, next): got %v, want %v", got, want)
	}
	e.checkBackup(t, l, prefix, res.Entries)
	if got, want := len(progress), l.total(); got != want {
		t.Errorf("Progress calls: got %d, want %d", got, want)
	}
	if last := progress[len(progress)-1]; last != [2]int{l.total(), l.total()} {
		t.Errorf("last Progress: got %v, want [%d %d]", last, l.total(), l.total())
	}
	cnt := e.emu.Counters()
	for _, en := range res.Entries {
		if got, want := cnt.Rewrites(en.Backup), 1; got != want {
			t.Errorf("rewrites of %s: got %d, want %d", en.Backup, got, want)
		}
	}
	// Only the wanted objects were copied (no decoys, nothing else).
	if got, want := cnt.RewrittenObjects(), l.total(); got != want {
		t.Errorf("distinct objects rewritten: got %d, want %d", got, want)
	}

	if err := c.WritePart(ctx, backupBucket, prefix, 0, res.Entries); err != nil {
		t.Fatalf("WritePart: %v", err)
	}
	m, err := c.Finish(ctx, backupBucket, prefix)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if got, want := len(m.Entries), l.total(); got != want {
		t.Errorf("manifest entries: got %d, want %d", got, want)
	}
	if got, want := m.Sources, l.sources; !reflect.DeepEqual(got, want) {
		t.Errorf("manifest sources: got %v, want %v", got, want)
	}
	read, err := c.ReadManifest(ctx, backupBucket, prefix)
	if err != nil {
		t.Fatalf("ReadManifest: %v", err)
	}
	if !reflect.DeepEqual(read, m) {
		t.Errorf("ReadManifest: got a manifest different from Finish's")
	}
	if err := Verify(ctx, e.client, m); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// TestCopyResume copies in chunks, resuming from the persisted cursor: every
// object is copied exactly once and no request is refused.
func TestCopyResume(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 100)
	tests := []struct {
		name       string
		maxObjects int
		wantCalls  int
	}{
		{"halfway", 100, 2},
		{"odd chunks", 37, 6},
		{"one chunk", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "r-" + strings.ReplaceAll(tt.name, " ", "-") + "/"
			e.emu.Counters().Reset()
			c := e.copier(16)
			entries, calls := copyAll(t, c, CopyRequest{
				Sources: l.sources, Bucket: backupBucket, Prefix: prefix, MaxObjects: tt.maxObjects,
			})
			if got, want := calls, tt.wantCalls; got != want {
				t.Errorf("calls: got %d, want %d", got, want)
			}
			if got, want := len(entries), l.total(); got != want {
				t.Errorf("entries over all calls: got %d, want %d (each object once)", got, want)
			}
			e.checkBackup(t, l, prefix, entries)
			cnt := e.emu.Counters()
			if got := cnt.PreconditionFailures(); got != 0 {
				t.Errorf("412s: got %d, want 0 (the cursor is exact)", got)
			}
			for _, en := range entries {
				if got, want := cnt.Rewrites(en.Backup), 1; got != want {
					t.Errorf("rewrites of %s: got %d, want %d", en.Backup, got, want)
				}
			}
			m, err := c.Finish(context.Background(), backupBucket, prefix)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if err := Verify(context.Background(), e.client, m); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// TestCopyCrashRedo simulates a worker killed after copying 60% of a chunk:
// its cursor is lost, so the chunk is redone from the zero cursor by
// another worker. Every object is copied at most twice, the redo meets 412s,
// and the manifest verifies. With crash-after-part the dead worker had also
// written its manifest part.
func TestCopyCrashRedo(t *testing.T) {
	tests := []struct {
		name           string
		perSource      int
		partWritten    bool
		wantPartsFiles int
	}{
		{"crash after its manifest part", 600, true, 2}, // 1,200 objects
		{"crash before its manifest part", 150, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 0)
			l := e.seedLayout(t, tt.perSource)
			ctx := context.Background()
			const prefix = "rollouts/r-crash/"
			req := CopyRequest{Sources: l.sources, Bucket: backupBucket, Prefix: prefix}

			crashed := req
			crashed.MaxObjects = l.total() * 60 / 100
			first, err := e.copier(16).Copy(ctx, crashed)
			if err != nil {
				t.Fatalf("first (crashing) Copy: %v", err)
			}
			if first.Done || first.Copied != crashed.MaxObjects {
				t.Fatalf("first Copy: got done %v copied %d, want not done, %d copied", first.Done, first.Copied, crashed.MaxObjects)
			}
			if tt.partWritten {
				if err := e.copier(16).WritePart(ctx, backupBucket, prefix, 0, first.Entries); err != nil {
					t.Fatalf("WritePart of the crashed chunk: %v", err)
				}
			}
			// Everything else of the first call is lost; the redo starts
			// from the zero cursor, as the persisted state still says.
			c := e.copier(16)
			redo, err := c.Copy(ctx, req)
			if err != nil {
				t.Fatalf("redo Copy: %v", err)
			}
			if !redo.Done {
				t.Fatalf("redo Copy: not done")
			}
			if got, want := redo.AlreadyThere, crashed.MaxObjects; got != want {
				t.Errorf("redo: already there: got %d, want %d", got, want)
			}
			if got, want := redo.Copied+redo.AlreadyThere, l.total(); got != want {
				t.Errorf("redo: copied + already there: got %d, want %d", got, want)
			}
			cnt := e.emu.Counters()
			if got := cnt.PreconditionFailures(); got < 1 {
				t.Errorf("412s: got %d, want at least 1", got)
			}
			for _, en := range redo.Entries {
				if got := cnt.Rewrites(en.Backup); got < 1 || got > 2 {
					t.Errorf("rewrites of %s: got %d, want 1 or 2", en.Backup, got)
				}
			}
			if err := c.WritePart(ctx, backupBucket, prefix, 0, redo.Entries); err != nil {
				t.Fatalf("WritePart of the redo: %v", err)
			}
			parts := 0
			for range listNames(t, e, backupBucket, prefix+"manifest/part-") {
				parts++
			}
			if got, want := parts, tt.wantPartsFiles; got != want {
				t.Errorf("manifest part files: got %d, want %d", got, want)
			}
			m, err := c.Finish(ctx, backupBucket, prefix)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if got, want := len(m.Entries), l.total(); got != want {
				t.Errorf("manifest entries: got %d, want %d", got, want)
			}
			e.checkBackup(t, l, prefix, m.Entries)
			if err := Verify(ctx, e.client, m); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestCopyBudget(t *testing.T) {
	e := newEnv(t, 5*time.Millisecond)
	l := e.seedLayout(t, 100)
	tests := []struct {
		name   string
		budget time.Duration
	}{
		{"tiny budget still progresses", time.Nanosecond},
		{"some copies per call", 60 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("budget-%d/", i)
			c := e.copier(4)
			req := CopyRequest{Sources: l.sources, Bucket: backupBucket, Prefix: prefix, Budget: tt.budget}
			first, err := c.Copy(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if first.Done || first.Copied < 1 || first.Copied >= l.total() {
				t.Errorf("first call: got done %v copied %d, want not done and 1..%d copied", first.Done, first.Copied, l.total()-1)
			}
			if tt.budget < time.Microsecond {
				req.Budget = 0 // one copy per call would take long; finish in one call
			}
			req.Cursor = first.Next
			entries, _ := copyAll(t, c, req)
			e.checkBackup(t, l, prefix, append(entries, first.Entries...))
		})
	}
}

// TestCopyStorageDown: unreachable storage makes Copy fail (transiently)
// instead of hanging; the cursor it returns is safe and the copy resumes.
func TestCopyStorageDown(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 100)
	ctx := context.Background()
	c := e.copier(4)
	const prefix = "down/"

	t.Run("down from the start", func(t *testing.T) {
		e.emu.SetDown(true)
		defer e.emu.SetDown(false)
		begin := time.Now()
		res, err := c.Copy(ctx, CopyRequest{Sources: l.sources, Bucket: backupBucket, Prefix: "down-0/"})
		if err == nil {
			t.Fatal("Copy with storage down: got nil error")
		}
		t.Logf("error with storage down: %v", err)
		if errors.Is(err, ErrMismatch) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) {
			t.Errorf("Copy with storage down: got a permanent error %v, want a transient one", err)
		}
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("Copy with storage down: got %v, want it to carry the 503", err)
		}
		if res.Next != (Cursor{}) || res.Done {
			t.Errorf("result: got next %+v done %v, want the zero cursor, not done", res.Next, res.Done)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Copy took %v with storage down, want a quick failure", d)
		}
	})

	t.Run("down halfway, then resumed", func(t *testing.T) {
		var once sync.Once
		res, err := c.Copy(ctx, CopyRequest{
			Sources: l.sources, Bucket: backupBucket, Prefix: prefix,
			Progress: func(copied, _ int) {
				if copied == 50 {
					once.Do(func() { e.emu.SetDown(true) })
				}
			},
		})
		e.emu.SetDown(false)
		if err == nil {
			t.Fatal("Copy: got nil error, want one (storage went down)")
		}
		if res.Done || res.Copied < 50 {
			t.Fatalf("result: got done %v copied %d, want not done and >= 50 copied", res.Done, res.Copied)
		}
		// Every object before the returned cursor is backed up and has an
		// entry.
		have := map[string]bool{}
		for _, en := range res.Entries {
			have[en.Source+"/"+en.Name] = true
		}
		for si, s := range l.sources {
			for _, name := range l.want[s.Bucket] {
				if si < res.Next.Source || (si == res.Next.Source && name <= res.Next.After) {
					if !have[s.Bucket+"/"+name] {
						t.Errorf("%s/%s is before the cursor %+v but has no entry", s.Bucket, name, res.Next)
					}
				}
			}
		}
		if err := c.WritePart(ctx, backupBucket, prefix, 0, res.Entries); err != nil {
			t.Fatal(err)
		}
		rest, _ := copyAll(t, c, CopyRequest{Sources: l.sources, Bucket: backupBucket, Prefix: prefix, Cursor: res.Next})
		e.checkBackup(t, l, prefix, append(rest, res.Entries...))
		m, err := c.Finish(ctx, backupBucket, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, e.client, m); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
}

// TestCopySourceChangedAfterListing: the listed generation is gone when the
// copy runs; the copier follows an overwrite and skips a deletion.
func TestCopySourceChangedAfterListing(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	if err := e.put(ctx, bucketA, "users/a", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	old, err := e.client.Bucket(bucketA).Object("users/a").Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.put(ctx, bucketA, "users/a", []byte("version 2")); err != nil {
		t.Fatal(err)
	}
	c := e.copier(1)
	listed := Entry{Source: bucketA, Name: "users/a", Backup: "p/objects/src-a/users/a", Size: old.Size, CRC32C: old.CRC32C, Generation: old.Generation}
	got, out, err := c.copyOne(ctx, backupBucket, listed)
	if err != nil {
		t.Fatalf("copyOne overwritten: %v", err)
	}
	if out != copied || got.Size != 9 || got.CRC32C != crc([]byte("version 2")) || got.Generation == old.Generation {
		t.Errorf("copyOne overwritten: got %v %+v, want copied at the new generation", out, got)
	}
	if data := e.read(t, backupBucket, listed.Backup); string(data) != "version 2" {
		t.Errorf("backup: got %q, want %q", data, "version 2")
	}

	gone := Entry{Source: bucketA, Name: "users/gone", Backup: "p/objects/src-a/users/gone", Generation: 12345}
	if _, out, err := c.copyOne(ctx, backupBucket, gone); err != nil || out != vanished {
		t.Errorf("copyOne deleted: got %v, %v; want vanished, nil", out, err)
	}
}

func TestCopyInvalid(t *testing.T) {
	e := newEnv(t, 0)
	c := e.copier(1)
	tests := []struct {
		name string
		c    *Copier
		req  CopyRequest
	}{
		{"no client", &Copier{}, CopyRequest{Sources: []Source{{Bucket: bucketA}}, Bucket: backupBucket}},
		{"no sources", c, CopyRequest{Bucket: backupBucket}},
		{"no bucket", c, CopyRequest{Sources: []Source{{Bucket: bucketA}}}},
		{"backup inside source", c, CopyRequest{Sources: []Source{{Bucket: bucketA, Prefix: "data/"}}, Bucket: bucketA, Prefix: "data/backups/r1"}},
		{"whole bucket source", c, CopyRequest{Sources: []Source{{Bucket: bucketA}}, Bucket: bucketA, Prefix: "backups/r1/"}},
		{"source inside backup", c, CopyRequest{Sources: []Source{{Bucket: bucketA, Prefix: "bk/r1/objects/"}}, Bucket: bucketA, Prefix: "bk/"}},
		{"cursor out of range", c, CopyRequest{Sources: []Source{{Bucket: bucketA}}, Bucket: backupBucket, Cursor: Cursor{Source: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Copy(context.Background(), tt.req)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Copy: got %v, want ErrInvalid", err)
			}
		})
	}
	// Same bucket, disjoint prefixes: fine.
	_, err := c.Copy(context.Background(), CopyRequest{Sources: []Source{{Bucket: bucketA, Prefix: "data/"}}, Bucket: bucketA, Prefix: "backups/r1/"})
	if err != nil {
		t.Errorf("Copy with disjoint prefixes in one bucket: %v", err)
	}
	// Reusing a backup prefix for other sources is a conflict.
	_, err = c.Copy(context.Background(), CopyRequest{Sources: []Source{{Bucket: bucketA, Prefix: "other/"}}, Bucket: bucketA, Prefix: "backups/r1/"})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("Copy into a prefix started for other sources: got %v, want ErrConflict", err)
	}
}

func TestTrackerCursor(t *testing.T) {
	start := Cursor{Source: 0, After: "a"}
	tests := []struct {
		name   string
		finish []int
		want   Cursor
	}{
		{"none finished", nil, start},
		{"only later ones", []int{1, 2, 3}, start},
		{"first finished", []int{0}, Cursor{0, "b"}},
		{"gap", []int{0, 1, 3, 4}, Cursor{0, "c"}},
		{"gap filled", []int{0, 1, 3, 2}, Cursor{1, "a"}},
		{"all", []int{4, 3, 2, 1, 0}, Cursor{1, "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr tracker
			for _, p := range []Cursor{{0, "b"}, {0, "c"}, {0, "d"}, {1, "a"}, {1, "b"}} {
				tr.add(p.Source, p.After)
			}
			for _, i := range tt.finish {
				tr.finish(i)
			}
			if got := tr.next(start); got != tt.want {
				t.Errorf("next: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCursorJSONIsSmall(t *testing.T) {
	data, err := json.Marshal(Cursor{Source: 1, After: "users/dir-3/obj-42"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"s":1,"a":"users/dir-3/obj-42"}`; got != want {
		t.Errorf("cursor JSON: got %s, want %s", got, want)
	}
	if data, _ := json.Marshal(Cursor{}); string(data) != "{}" {
		t.Errorf("zero cursor JSON: got %s, want {}", data)
	}
}

// TestRedoAfterSourceChanged: a chunk copies objects and dies before its
// state is saved; the app then overwrites one of them; the redo meets the
// old copy (412) and records the copy that is there — the backup holds what
// was copied before the change, and it verifies (no conflict, no mismatch).
func TestRedoAfterSourceChanged(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	names := []string{"a-1", "a-2", "a-3", "a-4"}
	e.seed(t, bucketA, names)
	before, err := e.client.Bucket(bucketA).Object("a-2").Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := e.copier(2)
	req := CopyRequest{Sources: []Source{{Bucket: bucketA}}, Bucket: backupBucket, Prefix: "bk/"}
	first, err := c.Copy(ctx, req)
	if err != nil || !first.Done {
		t.Fatalf("first copy: %+v, %v", first, err)
	}
	// Crash: nothing of the first chunk is saved. The source changes.
	if err := e.put(ctx, bucketA, "a-2", []byte("changed after the backup copied it")); err != nil {
		t.Fatal(err)
	}
	redo, err := c.Copy(ctx, req)
	if err != nil || redo.AlreadyThere != len(names) {
		t.Fatalf("redo: %+v, %v; want every object already there", redo, err)
	}
	if err := c.WritePart(ctx, backupBucket, "bk/", 0, redo.Entries); err != nil {
		t.Fatal(err)
	}
	m, err := c.Finish(ctx, backupBucket, "bk/")
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := Verify(ctx, e.client, m); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, en := range m.Entries {
		if en.Name == "a-2" && (en.Generation != before.Generation || en.CRC32C != before.CRC32C) {
			t.Errorf("manifest entry for a-2 = gen %d crc %x, want the copied gen %d crc %x", en.Generation, en.CRC32C, before.Generation, before.CRC32C)
		}
	}
}
