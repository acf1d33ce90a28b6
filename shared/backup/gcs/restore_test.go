package gcs

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
)

// state is every object of the source buckets: name -> generation and CRC32C.
func (e *env) state(t *testing.T) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	for _, b := range []string{bucketA, bucketB} {
		for _, name := range listNames(t, e, b, "") {
			a, err := e.client.Bucket(b).Object(name).Attrs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out[b+"/"+name] = [2]int64{a.Generation, int64(a.CRC32C)}
		}
	}
	return out
}

func TestRestoreRoundTrip(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 20)
	ctx := context.Background()
	m := e.backup(t, l, "rollouts/r-restore/")

	// After the backup: change three objects, delete two, add one under a
	// source prefix and one outside every source.
	a, b := l.want[bucketA], l.want[bucketB]
	changed := [][2]string{{bucketA, a[1]}, {bucketA, a[3]}, {bucketB, b[2]}}
	deleted := [][2]string{{bucketA, a[4]}, {bucketB, b[5]}}
	for _, o := range changed {
		if err := e.put(ctx, o[0], o[1], []byte("changed by the canary")); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range deleted {
		if err := e.client.Bucket(o[0]).Object(o[1]).Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range [][2]string{{bucketA, "users/written-after-backup"}, {bucketA, "tmp/outside-every-source"}} {
		if err := e.put(ctx, o[0], o[1], []byte("new")); err != nil {
			t.Fatal(err)
		}
	}

	var wantRestore []string
	for _, o := range append(changed, deleted...) {
		wantRestore = append(wantRestore, gsURL(o[0], o[1]))
	}
	sort.Strings(wantRestore)
	wantNew := []string{"gs://src-a/users/written-after-backup"}
	checkPlan := func(t *testing.T, got RestorePlan, wantRestore, wantNew []string, wantUnchanged int) {
		t.Helper()
		if !reflect.DeepEqual(got.Restore, wantRestore) {
			t.Errorf("plan.Restore: got %v, want %v", got.Restore, wantRestore)
		}
		if !reflect.DeepEqual(got.New, wantNew) {
			t.Errorf("plan.New: got %v, want %v", got.New, wantNew)
		}
		if len(got.Unchanged) != wantUnchanged {
			t.Errorf("plan.Unchanged: got %d, want %d", len(got.Unchanged), wantUnchanged)
		}
	}

	t.Run("dry run changes nothing", func(t *testing.T) {
		before := e.state(t)
		e.emu.Counters().Reset()
		plan, err := Restore(ctx, e.client, m, RestoreOptions{DryRun: true, DeleteNew: true})
		if err != nil {
			t.Fatalf("Restore dry run: %v", err)
		}
		checkPlan(t, plan, wantRestore, wantNew, l.total()-5)
		if got := e.emu.Counters().RewrittenObjects(); got != 0 {
			t.Errorf("objects rewritten by a dry run: got %d, want 0", got)
		}
		if after := e.state(t); !reflect.DeepEqual(after, before) {
			t.Errorf("source state changed by a dry run")
		}
	})

	t.Run("restore", func(t *testing.T) {
		plan, err := Restore(ctx, e.client, m, RestoreOptions{})
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		checkPlan(t, plan, wantRestore, wantNew, l.total()-5)
		for bucket, names := range l.want {
			for _, name := range names {
				want := content(bucket, name)
				if got := e.read(t, bucket, name); !bytes.Equal(got, want) {
					t.Errorf("%s/%s after restore: got %q, want %q", bucket, name, got, want)
				}
				a, err := e.client.Bucket(bucket).Object(name).Attrs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if a.CRC32C != crc(want) {
					t.Errorf("%s/%s after restore: crc32c %08x, want %08x", bucket, name, a.CRC32C, crc(want))
				}
			}
		}
		if got := e.read(t, bucketA, "users/written-after-backup"); string(got) != "new" {
			t.Errorf("new object without DeleteNew: got %q, want it kept", got)
		}
	})

	t.Run("delete new", func(t *testing.T) {
		plan, err := Restore(ctx, e.client, m, RestoreOptions{DeleteNew: true})
		if err != nil {
			t.Fatalf("Restore DeleteNew: %v", err)
		}
		checkPlan(t, plan, nil, wantNew, l.total())
		names := listNames(t, e, bucketA, "users/written-after-backup")
		if len(names) != 0 {
			t.Errorf("new object after DeleteNew: got %v, want it deleted", names)
		}
		if got := e.read(t, bucketA, "tmp/outside-every-source"); string(got) != "new" {
			t.Errorf("object outside every source: got %q, want it untouched", got)
		}
		if got, want := len(listNames(t, e, bucketA, "tmp/")), 11; got != want {
			t.Errorf("objects under tmp/ (outside the sources): got %d, want %d", got, want)
		}
		plan, err = Restore(ctx, e.client, m, RestoreOptions{DeleteNew: true})
		if err != nil {
			t.Fatalf("Restore after restore: %v", err)
		}
		checkPlan(t, plan, nil, nil, l.total())
	})

	t.Run("delete new needs sources", func(t *testing.T) {
		noSources := m
		noSources.Sources = nil
		if _, err := Restore(ctx, e.client, noSources, RestoreOptions{DeleteNew: true}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Restore DeleteNew without sources: got %v, want ErrInvalid", err)
		}
	})
}

// TestRestoreRefusesConcurrentWrite: an object written between planning and
// applying is not clobbered (the generation precondition refuses it).
func TestRestoreRefusesConcurrentWrite(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	if err := e.put(ctx, bucketA, "users/a", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	en := Entry{Source: bucketA, Name: "users/a", Backup: "p/objects/src-a/users/a", Size: 2, CRC32C: crc([]byte("v1"))}
	if err := e.put(ctx, backupBucket, en.Backup, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := e.put(ctx, bucketA, "users/a", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	planned, err := e.client.Bucket(bucketA).Object("users/a").Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.put(ctx, bucketA, "users/a", []byte("v3, written meanwhile")); err != nil {
		t.Fatal(err)
	}
	err = restoreOne(ctx, e.client, backupBucket, restoreItem{e: en, gen: planned.Generation})
	if err == nil || !isPreconditionFailed(err) {
		t.Errorf("restore over a concurrently written object: got %v, want a 412", err)
	}
	if got := e.read(t, bucketA, "users/a"); string(got) != "v3, written meanwhile" {
		t.Errorf("object after refused restore: got %q", got)
	}
}
