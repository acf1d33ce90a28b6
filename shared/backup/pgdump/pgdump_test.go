package pgdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/jackc/pgx/v5"
)

// seedSQL builds a database with the types a backup must carry exactly:
// bytea (every byte value), json and jsonb, unicode text, control
// characters, arrays with NULLs and quotes, numerics, floats, timestamps,
// NULLs, a foreign key, a sequence, an index, a view and an empty table.
const seedSQL = `
CREATE TABLE items (
	id     int PRIMARY KEY,
	name   text NOT NULL,
	data   bytea,
	doc    jsonb,
	meta   json,
	price  numeric(12,2),
	score  double precision,
	at     timestamptz,
	tags   text[],
	note   text
);
INSERT INTO items
SELECT g,
	'héllo ☃ 日本語 🐘 #' || g,
	decode(md5(g::text), 'hex') || '\x00ff0a5c'::bytea,
	jsonb_build_object('n', g, 'name', 'ünïcødé ' || g, 'list', jsonb_build_array(g, g * 2, 'x', null)),
	json_build_object('k', 'v' || g, 'emoji', '🐘', 'nested', json_build_object('a', g % 3)),
	(g * 1.25)::numeric(12,2),
	random() * 1e6,
	timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 7.123456 seconds',
	ARRAY['a' || g, 'b,"quoted"', NULL],
	CASE WHEN g % 7 = 0 THEN NULL ELSE E'tab\there\nnew line \\ backslash ''quote''' END
FROM generate_series(1, 5000) g;

CREATE TABLE events (
	id      bigserial PRIMARY KEY,
	item_id int NOT NULL REFERENCES items (id),
	payload text
);
INSERT INTO events (item_id, payload)
SELECT 1 + g % 3000, repeat('ev' || g || ' ', 1 + g % 5) FROM generate_series(1, 3000) g;
CREATE INDEX events_item ON events (item_id);

CREATE TABLE empty_table (id int PRIMARY KEY, v text);
CREATE VIEW pricey AS SELECT id, price FROM items WHERE price > 100;
`

// seeded creates database name, fills it and dumps it. It returns the URL,
// a connection, the archive and the seeded contents.
func seeded(t *testing.T, name string) (url string, c *pgx.Conn, dump []byte, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	url = newDatabase(t, name)
	c = connect(t, url)
	mustExec(t, c, seedSQL)
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	mustExec(t, c, `INSERT INTO items (id, name, data, doc, meta, price, score, note) VALUES ($1, $2, $3, $4, $5, 'NaN', 'Infinity', $6)`,
		100001, "'; DROP TABLE items; --\r\n\x01\x7f ∑ \U0001F600",
		allBytes, `{"esc": "\u00e9\n\"", "big": 1e400, "deep": {"a": [[[]]]}}`, `{"dup": 1, "dup": 2}`, strings.Repeat("ü", 100000))
	want = snapshot(t, c)
	if len(want) != 4 { // items, events, events_id_seq, empty_table
		t.Fatalf("seeded snapshot has %d relations, want 4: %v", len(want), want)
	}

	var buf bytes.Buffer
	st, err := (&Dumper{}).Dump(ctx, url, &buf)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if st.Bytes != int64(buf.Len()) {
		t.Errorf("Stats.Bytes = %d, want %d (bytes written)", st.Bytes, buf.Len())
	}
	if st.Duration <= 0 {
		t.Errorf("Stats.Duration = %v, want > 0", st.Duration)
	}
	t.Logf("dumped %d bytes in %v", st.Bytes, st.Duration)
	return url, c, buf.Bytes(), want
}

func TestDumpVerifyRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	url, c, dump, want := seeded(t, "roundtrip")
	d := &Dumper{}

	tables, err := d.Verify(ctx, bytes.NewReader(dump))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if tables != 3 {
		t.Errorf("Verify: %d tables, want 3 (items, events, empty_table)", tables)
	}

	mustExec(t, c, `UPDATE items SET name = 'changed', doc = '{}' WHERE id % 10 = 0`)
	mustExec(t, c, `DELETE FROM items WHERE id BETWEEN 4000 AND 4100`)
	mustExec(t, c, `INSERT INTO items (id, name) VALUES (999999, 'new row')`)
	mustExec(t, c, `INSERT INTO empty_table VALUES (1, 'not empty any more')`)
	mustExec(t, c, `DROP TABLE events`)
	mustExec(t, c, `CREATE TABLE extra (id int PRIMARY KEY)`)
	if diff := diffSnapshots(snapshot(t, c), want); len(diff) == 0 {
		t.Fatalf("mutations changed nothing")
	}

	begin := time.Now()
	if err := d.Restore(ctx, url, bytes.NewReader(dump)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restored in %v", time.Since(begin))

	got := snapshot(t, c)
	if _, ok := got["extra"]; !ok {
		t.Errorf("table extra (not in the archive) is gone after Restore; want it left alone")
	}
	delete(got, "extra")
	for _, d := range diffSnapshots(got, want) {
		t.Errorf("after Restore: %s", d)
	}

	// The schema came back too: the foreign key, the index, the view.
	var fks, idx, views int
	err = c.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'f'),
		(SELECT count(*) FROM pg_indexes WHERE indexname = 'events_item'),
		(SELECT count(*) FROM pg_views WHERE viewname = 'pricey')`).Scan(&fks, &idx, &views)
	if err != nil {
		t.Fatal(err)
	}
	if fks != 1 || idx != 1 || views != 1 {
		t.Errorf("after Restore: %d foreign keys, %d indexes, %d views; want 1 each", fks, idx, views)
	}

	// Restoring twice is fine (--clean --if-exists).
	if err := d.Restore(ctx, url, bytes.NewReader(dump)); err != nil {
		t.Fatalf("second Restore: %v", err)
	}
	got = snapshot(t, c)
	delete(got, "extra")
	for _, d := range diffSnapshots(got, want) {
		t.Errorf("after second Restore: %s", d)
	}

	// Into a new, empty database.
	url2 := newDatabase(t, "roundtrip_copy")
	if err := d.Restore(ctx, url2, bytes.NewReader(dump)); err != nil {
		t.Fatalf("Restore into an empty database: %v", err)
	}
	for _, d := range diffSnapshots(snapshot(t, connect(t, url2)), want) {
		t.Errorf("after Restore into an empty database: %s", d)
	}
}

func TestTruncatedDump(t *testing.T) {
	ctx := context.Background()
	url, c, dump, want := seeded(t, "truncated")
	d := &Dumper{}
	t.Logf("archive of %d bytes", len(dump))

	cuts := []int{0, 1, 5, 100, 1000, len(dump) / 4, len(dump) / 2, len(dump) * 9 / 10, len(dump) - 100, len(dump) - 2, len(dump) - 1}
	for _, n := range cuts {
		t.Run(fmt.Sprintf("cut at %d", n), func(t *testing.T) {
			tables, err := d.Verify(ctx, bytes.NewReader(dump[:n]))
			if !errors.Is(err, ErrInvalidDump) {
				t.Fatalf("Verify of the first %d of %d bytes: got (%d, %v), want ErrInvalidDump", n, len(dump), tables, err)
			}
			t.Logf("%v", err)
		})
	}
	for name, data := range map[string][]byte{
		"not an archive": []byte("-- PostgreSQL database dump\nCREATE TABLE x ();\n"),
		"random bytes":   randomBytes(1 << 16),
		"trailing junk":  append(append([]byte{}, dump...), randomBytes(64)...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := d.Verify(ctx, bytes.NewReader(data))
			if name == "trailing junk" {
				// pg_restore stops at the last entry; what follows is ignored.
				t.Logf("Verify with trailing junk: %v", err)
				return
			}
			if !errors.Is(err, ErrInvalidDump) {
				t.Fatalf("Verify: got %v, want ErrInvalidDump", err)
			}
		})
	}

	// A failed restore changes nothing: mutate, restore a truncated archive,
	// and find the mutated contents intact.
	mustExec(t, c, `UPDATE items SET name = 'mutated' WHERE id % 3 = 0`)
	mustExec(t, c, `DELETE FROM events WHERE id % 2 = 0`)
	mustExec(t, c, `INSERT INTO empty_table VALUES (7, 'seven')`)
	mutated := snapshot(t, c)
	if len(diffSnapshots(mutated, want)) == 0 {
		t.Fatal("mutations changed nothing")
	}
	for _, n := range []int{100, len(dump) / 2, len(dump) * 9 / 10, len(dump) - 1} {
		err := d.Restore(ctx, url, bytes.NewReader(dump[:n]))
		if err == nil {
			t.Fatalf("Restore of the first %d of %d bytes: got nil error", n, len(dump))
		}
		if !errors.Is(err, ErrInvalidDump) {
			t.Errorf("Restore of the first %d bytes: got %v, want ErrInvalidDump", n, err)
		}
		for _, d := range diffSnapshots(snapshot(t, c), mutated) {
			t.Errorf("after the failed Restore of %d bytes: %s", n, d)
		}
	}

	// A reader that fails mid-way fails the restore, and changes nothing.
	err := d.Restore(ctx, url, io.MultiReader(bytes.NewReader(dump[:len(dump)*9/10]), errReader{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Restore from a failing reader: got %v, want the reader's error", err)
	}
	for _, d := range diffSnapshots(snapshot(t, c), mutated) {
		t.Errorf("after the Restore from a failing reader: %s", d)
	}
	_, err = d.Verify(ctx, io.MultiReader(bytes.NewReader(dump[:100]), errReader{}))
	if err == nil || errors.Is(err, ErrInvalidDump) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Verify from a failing reader: got %v, want the reader's error, not ErrInvalidDump", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestUnreachable(t *testing.T) {
	postgres.SkipIfUnavailable(t)
	ctx := context.Background()
	s, err := postgres.Start(ctx, postgres.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := strings.Replace(s.URL("app"), "postgres@", "postgres:s3cr3t-pa55@", 1)

	// A port that accepts connections and never answers: only the connect
	// timeout ends the wait.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	silentURL := fmt.Sprintf("postgres://postgres:s3cr3t-pa55@%s/app?sslmode=disable", silent.Addr())

	d := &Dumper{ConnectTimeout: 2 * time.Second}
	for _, c := range []struct {
		name, url string
		within    time.Duration
	}{
		{"stopped server", stopped, 3 * time.Second},
		{"silent server", silentURL, 6 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			begin := time.Now()
			_, err := d.Dump(ctx, c.url, io.Discard)
			took := time.Since(begin)
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Dump: got %v, want ErrUnreachable", err)
			}
			if took > c.within {
				t.Errorf("Dump took %v to fail, want under %v", took, c.within)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the password: %v", err)
			}
			t.Logf("Dump failed in %v: %v", took.Round(time.Millisecond), err)

			// Restore reads the archive's table of contents before it
			// connects, so give it a real one.
			err = d.Restore(ctx, c.url, bytes.NewReader(emptyDump(t)))
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Restore: got %v, want ErrUnreachable", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// emptyDump returns the archive of an empty database.
func emptyDump(t *testing.T) []byte {
	t.Helper()
	url := newDatabase(t, "empty_"+strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())))
	var buf bytes.Buffer
	if _, err := (&Dumper{}).Dump(context.Background(), url, &buf); err != nil {
		t.Fatalf("Dump of an empty database: %v", err)
	}
	return buf.Bytes()
}

// Errors other than an unreachable server are not ErrUnreachable, and never
// show the password.
func TestDumpErrors(t *testing.T) {
	ctx := context.Background()
	s := server(t)
	d := &Dumper{}

	missing := strings.Replace(s.URL("no_such_db"), "postgres@", "postgres:s3cr3t-pa55@", 1)
	_, err := d.Dump(ctx, missing, io.Discard)
	if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Dump of a missing database: got %v, want a 'does not exist' error that is not ErrUnreachable", err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error shows the password: %v", err)
	}
	if err != nil && !strings.Contains(err.Error(), "xxxxx") {
		t.Errorf("error %q does not show the redacted URL", err)
	}

	url := newDatabase(t, "writefail")
	mustExec(t, connect(t, url), `CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g`)
	begin := time.Now()
	_, err = d.Dump(ctx, url, &failingWriter{after: 4096})
	if err == nil || !strings.Contains(err.Error(), "writing the archive") || !strings.Contains(err.Error(), "upload broke") {
		t.Errorf("Dump into a failing writer: got %v, want the writer's error", err)
	}
	t.Logf("Dump into a failing writer failed in %v: %v", time.Since(begin), err)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Dump(cctx, url, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Dump with a cancelled context: got %v, want context.Canceled", err)
	}

	if _, err := d.Dump(ctx, "postgres://u:p@[::1/db", io.Discard); err == nil || strings.Contains(err.Error(), "u:p") {
		t.Errorf("Dump with a bad URL: got %v, want an error without the URL", err)
	}

	nowhere := &Dumper{BinDir: t.TempDir()}
	if _, err := nowhere.Dump(ctx, url, io.Discard); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Dump with no pg_dump in BinDir: got %v, want ErrNotInstalled", err)
	}
}

type failingWriter struct{ n, after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.after {
		return 0, errors.New("upload broke")
	}
	w.n += len(p)
	return len(p), nil
}

func TestParseConn(t *testing.T) {
	for _, c := range []struct {
		in, dbname, password, redacted string
	}{
		{"postgres://app@db:5432/x?sslmode=disable", "postgres://app@db:5432/x?sslmode=disable", "", "postgres://app@db:5432/x?sslmode=disable"},
		{"postgres://app:p%40ss@db/x", "postgres://app@db/x", "p@ss", "postgres://app:xxxxx@db/x"},
		{"postgresql://app@/x?host=/cloudsql/p:r:i&password=pw", "postgresql://app@/x?host=%2Fcloudsql%2Fp%3Ar%3Ai", "pw", "postgresql://app:xxxxx@/x?host=%2Fcloudsql%2Fp%3Ar%3Ai"},
		{"host=db dbname=x password=secret user=app", "host=db dbname=x  user=app", "secret", "host=db dbname=x  user=app"},
		{`host=db password='it\'s x \\ y' dbname=x`, "host=db  dbname=x", `it's x \ y`, "host=db  dbname=x"},
	} {
		got, err := parseConn(c.in)
		if err != nil {
			t.Errorf("parseConn(%q): %v", c.in, err)
			continue
		}
		if got.dbname != c.dbname || got.password != c.password || got.redacted != c.redacted {
			t.Errorf("parseConn(%q) = {%q, %q, %q}, want {%q, %q, %q}", c.in,
				got.dbname, got.password, got.redacted, c.dbname, c.password, c.redacted)
		}
	}
	for _, in := range []string{"", "just-a-name", "postgres://u:pw@[::1/x"} {
		if _, err := parseConn(in); err == nil || (in != "" && strings.Contains(err.Error(), "pw")) {
			t.Errorf("parseConn(%q): got %v, want an error without the password", in, err)
		}
	}
}

func TestCountTableData(t *testing.T) {
	listing := `;
; Archive created at 2026-11-26 13:00:00 UTC
;     dbname: app
;     TOC Entries: 12
;
215; 1259 16385 TABLE public items postgres
216; 1259 16390 TABLE public events postgres
3340; 0 16385 TABLE DATA public items postgres
3341; 0 16390 TABLE DATA public events postgres
3342; 0 16399 TABLE DATA public "TABLE DATA" postgres
3343; 0 0 SEQUENCE SET public events_id_seq postgres
;3344; 0 16400 TABLE DATA public commented_out postgres
3190; 2606 16395 CONSTRAINT public items items_pkey postgres
`
	if got := countTableData(listing); got != 3 {
		t.Errorf("countTableData = %d, want 3", got)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]version{
		"pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n": {15, 18},
		"pg_restore (PostgreSQL) 17beta1":                       {17, 0},
		"pg_dump (PostgreSQL) 9.6.24":                           {9, 6},
	} {
		got, err := parseVersion(in)
		if err != nil || got != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseVersion("nonsense"); err == nil {
		t.Error("parseVersion(nonsense): got nil error")
	}
}

// Without BinDir the newest pg_dump wins, wherever it is.
func TestNewestTool(t *testing.T) {
	root := t.TempDir()
	fake := func(dir, v string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "pg_dump")
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) "+v+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pathDir := filepath.Join(root, "path")
	onPath := fake(pathDir, "15.3")
	fake(filepath.Join(root, "lib", "14", "bin"), "14.9")
	newest := fake(filepath.Join(root, "lib", "16", "bin"), "16.2")
	old := libDir
	libDir = filepath.Join(root, "lib")
	defer func() { libDir = old }()
	t.Setenv("PATH", pathDir)

	got, err := (&Dumper{}).tool(context.Background(), "pg_dump")
	if err != nil || got != newest {
		t.Errorf("tool(pg_dump) = %q, %v; want %q", got, err, newest)
	}
	fake(filepath.Join(root, "lib", "16", "bin"), "15.3")
	got, err = (&Dumper{}).tool(context.Background(), "pg_dump")
	if err != nil || got != onPath {
		t.Errorf("on a tie, tool(pg_dump) = %q, %v; want the one on PATH %q", got, err, onPath)
	}
	if _, err := (&Dumper{}).tool(context.Background(), "pg_restore"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("tool(pg_restore) with none installed: got %v, want ErrNotInstalled", err)
	}
}
