package gcs

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
)

func entry(name string, gen int64) Entry {
	return Entry{Source: bucketA, Name: name, Backup: "m/objects/src-a/" + name, Size: 3, CRC32C: 42, Generation: gen}
}

func TestManifestParts(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	a, b, c2, d := entry("a", 1), entry("b", 1), entry("c", 1), entry("d", 1)
	tests := []struct {
		name      string
		parts     [][]Entry // written as seq 0, 1, ... ; nil skips a seq
		seqs      []int
		wantFiles int
		want      []Entry
		conflict  string
	}{
		{
			name:      "two chunks",
			parts:     [][]Entry{{a, b}, {c2}},
			seqs:      []int{0, 1},
			wantFiles: 2,
			want:      []Entry{a, b, c2},
		},
		{
			name:      "redelivered chunk, same part",
			parts:     [][]Entry{{b, a}, {a, b}},
			seqs:      []int{0, 0},
			wantFiles: 1,
			want:      []Entry{a, b},
		},
		{
			name:      "redone chunk with another extent keeps both",
			parts:     [][]Entry{{a, b}, {a, b, c2, d}},
			seqs:      []int{0, 0},
			wantFiles: 2,
			want:      []Entry{a, b, c2, d},
		},
		{
			name:      "conflicting entries",
			parts:     [][]Entry{{a, b}, {entry("b", 2)}},
			seqs:      []int{0, 1},
			wantFiles: 2,
			conflict:  "m/objects/src-a/b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "manifest-" + strings.ReplaceAll(tt.name, " ", "-")
			cp := e.copier(1)
			for i, p := range tt.parts {
				if err := cp.WritePart(ctx, backupBucket, prefix, tt.seqs[i], p); err != nil {
					t.Fatalf("WritePart %d: %v", i, err)
				}
			}
			files := listNames(t, e, backupBucket, prefix+"/manifest/part-")
			if got, want := len(files), tt.wantFiles; got != want {
				t.Errorf("part files: got %d (%v), want %d", got, files, want)
			}
			m, err := cp.Finish(ctx, backupBucket, prefix)
			if tt.conflict != "" {
				if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tt.conflict) {
					t.Fatalf("Finish: got %v, want ErrConflict naming %s", err, tt.conflict)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if got, want := m.Entries, tt.want; !reflect.DeepEqual(got, want) {
				t.Errorf("entries: got %v, want %v", got, want)
			}
			if got, want := m.Prefix, prefix+"/"; got != want {
				t.Errorf("prefix: got %q, want %q", got, want)
			}
			// Finish again (a redelivered message): same manifest.
			again, err := cp.Finish(ctx, backupBucket, prefix)
			if err != nil {
				t.Fatalf("second Finish: %v", err)
			}
			if !reflect.DeepEqual(again, m) {
				t.Errorf("second Finish: got %v, want %v", again, m)
			}
			read, err := cp.ReadManifest(ctx, backupBucket, prefix)
			if err != nil {
				t.Fatalf("ReadManifest: %v", err)
			}
			if !reflect.DeepEqual(read, m) {
				t.Errorf("ReadManifest: got %v, want %v", read, m)
			}
		})
	}
}

func TestReadManifestMissing(t *testing.T) {
	e := newEnv(t, 0)
	_, err := e.copier(1).ReadManifest(context.Background(), backupBucket, "nothing-here/")
	if !errors.Is(err, storage.ErrObjectNotExist) {
		t.Errorf("ReadManifest of a missing manifest: got %v, want storage.ErrObjectNotExist", err)
	}
}
