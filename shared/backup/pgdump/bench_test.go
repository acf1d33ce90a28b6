package pgdump

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
)

// benchRows makes a table of about 50 MB (pg_total_relation_size): 210,000
// rows of ~240 bytes on disk, a third of it random hex, which compresses only
// about 2:1.
const benchRows = 210_000

// benchDB numbers the benchmark's databases (-count runs it again).
var benchDB atomic.Int32

// BenchmarkDump compares Dumper.Dump (pg_dump's output streamed through a
// pipe into a Go writer) with pg_dump writing straight to /dev/null
// (--no-sync: /dev/null cannot be fsynced), on the same ~50 MB table. MB/s is
// table megabytes (pg_total_relation_size) per second. The verify
// sub-benchmark is Dumper.Verify on the archive, read from memory.
//
//	go test -run '^$' -bench Dump -benchtime 5x ./shared/backup/pgdump
func BenchmarkDump(b *testing.B) {
	ctx := context.Background()
	url := newDatabase(b, fmt.Sprintf("bench_%d", benchDB.Add(1)))
	c := connect(b, url)
	mustExec(b, c, fmt.Sprintf(`CREATE TABLE bench AS
		SELECT g AS id,
			md5(g::text) AS a,
			md5(random()::text) || md5(random()::text) AS b,
			timestamptz '2024-01-01' + g * interval '1 second' AS at,
			jsonb_build_object('n', g, 'v', md5((g * 7)::text)) AS doc
		FROM generate_series(1, %d) g`, benchRows))
	mustExec(b, c, `ALTER TABLE bench ADD PRIMARY KEY (id)`)
	mustExec(b, c, `VACUUM ANALYZE bench`)
	var size int64
	if err := c.QueryRow(ctx, `SELECT pg_total_relation_size('bench')`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / 1e6
	b.Logf("table bench: %d rows, %.1f MB", benchRows, mb)

	d := &Dumper{}
	pgDump, err := d.tool(ctx, "pg_dump")
	if err != nil {
		b.Fatal(err)
	}

	b.Run("coalmine", func(b *testing.B) {
		var archive int64
		for b.Loop() {
			var w countingWriter
			st, err := d.Dump(ctx, url, &w)
			if err != nil {
				b.Fatal(err)
			}
			if st.Bytes != w.n {
				b.Fatalf("Stats.Bytes = %d, writer got %d", st.Bytes, w.n)
			}
			archive = w.n
		}
		b.ReportMetric(mb*float64(b.N)/b.Elapsed().Seconds(), "MB/s")
		b.ReportMetric(float64(archive)/1e6, "archive-MB")
	})
	var archive bytes.Buffer
	if _, err := d.Dump(ctx, url, &archive); err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Verify(ctx, bytes.NewReader(archive.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(mb*float64(b.N)/b.Elapsed().Seconds(), "MB/s")
	})
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.CommandContext(ctx, pgDump, "--format=custom", "--no-sync", "--file="+os.DevNull, "--dbname="+url)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("pg_dump: %v: %s", err, out)
			}
		}
		b.ReportMetric(mb*float64(b.N)/b.Elapsed().Seconds(), "MB/s")
	})
}

// countingWriter counts and discards what is written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
