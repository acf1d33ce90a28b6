package gcs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// backup copies the layout into prefix and returns the finished manifest.
func (e *env) backup(t *testing.T, l layout, prefix string) Manifest {
	t.Helper()
	ctx := context.Background()
	c := e.copier(8)
	res, err := c.Copy(ctx, CopyRequest{Sources: l.sources, Bucket: backupBucket, Prefix: prefix})
	if err != nil || !res.Done {
		t.Fatalf("Copy: done %v, err %v", res.Done, err)
	}
	if err := c.WritePart(ctx, backupBucket, prefix, 0, res.Entries); err != nil {
		t.Fatalf("WritePart: %v", err)
	}
	m, err := c.Finish(ctx, backupBucket, prefix)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return m
}

func TestVerify(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 20)
	ctx := context.Background()
	tests := []struct {
		name     string
		damage   func(t *testing.T, m Manifest) []string // returns the damaged backup names
		wantMsg  []string
		mismatch bool
	}{
		{
			name:   "intact",
			damage: func(*testing.T, Manifest) []string { return nil },
		},
		{
			name: "corrupted in place, attributes stale",
			damage: func(t *testing.T, m Manifest) []string {
				name := m.Entries[5].Backup
				if err := e.emu.CorruptObject(backupBucket, name); err != nil {
					t.Fatal(err)
				}
				return []string{name}
			},
			wantMsg:  []string{"1 of 40 objects differ", "content has crc32c"},
			mismatch: true,
		},
		{
			name: "overwritten",
			damage: func(t *testing.T, m Manifest) []string {
				name := m.Entries[7].Backup
				if err := e.put(ctx, backupBucket, name, []byte("something else entirely")); err != nil {
					t.Fatal(err)
				}
				return []string{name}
			},
			wantMsg:  []string{"1 of 40 objects differ", "size 23, manifest says"},
			mismatch: true,
		},
		{
			name: "deleted",
			damage: func(t *testing.T, m Manifest) []string {
				name := m.Entries[9].Backup
				if err := e.client.Bucket(backupBucket).Object(name).Delete(ctx); err != nil {
					t.Fatal(err)
				}
				return []string{name}
			},
			wantMsg:  []string{"1 of 40 objects differ", "missing"},
			mismatch: true,
		},
		{
			name: "twelve corrupted: ten named, two counted",
			damage: func(t *testing.T, m Manifest) []string {
				for i := range 12 {
					if err := e.emu.CorruptObject(backupBucket, m.Entries[i*3].Backup); err != nil {
						t.Fatal(err)
					}
				}
				return nil // which ten are named is checked by the count
			},
			wantMsg:  []string{"12 of 40 objects differ", "; and 2 more"},
			mismatch: true,
		},
		{
			name: "an extra object in the backup prefix is ignored",
			damage: func(t *testing.T, m Manifest) []string {
				if err := e.put(ctx, backupBucket, m.Prefix+"objects/src-a/users/stray", []byte("x")); err != nil {
					t.Fatal(err)
				}
				return nil
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.backup(t, l, fmt.Sprintf("verify-%d/", i))
			damaged := tt.damage(t, m)
			err := Verify(ctx, e.client, m)
			if got, want := errors.Is(err, ErrMismatch), tt.mismatch; got != want {
				t.Fatalf("Verify: got %v, want ErrMismatch: %v", err, want)
			}
			if err == nil {
				return
			}
			for _, s := range append(tt.wantMsg, damaged...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Verify error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestVerifyStorageDown(t *testing.T) {
	e := newEnv(t, 0)
	l := e.seedLayout(t, 5)
	m := e.backup(t, l, "down/")
	e.emu.SetDown(true)
	defer e.emu.SetDown(false)
	err := Verify(context.Background(), e.client, m)
	if err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("Verify with storage down: got %v, want a transient (non-ErrMismatch) error", err)
	}
}
