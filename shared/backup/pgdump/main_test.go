package pgdump

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/jackc/pgx/v5"
)

// The tests share one server, started by the first test that needs it and
// stopped by TestMain. Each test works in a database of its own.
var shared struct {
	once sync.Once
	srv  *postgres.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Stop()
	}
	os.Exit(code)
}

// server returns the shared server, skipping t when PostgreSQL is not
// installed (unless COALMINE_REQUIRE_POSTGRES is set, which fails it).
func server(t testing.TB) *postgres.Server {
	t.Helper()
	postgres.SkipIfUnavailable(t)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.srv, shared.err = postgres.Start(ctx, postgres.Options{Logger: slog.New(slog.DiscardHandler)})
	})
	if shared.err != nil {
		t.Fatalf("start postgres: %v", shared.err)
	}
	return shared.srv
}

// newDatabase creates a database for t on the shared server and returns its
// URL.
func newDatabase(t testing.TB, name string) string {
	t.Helper()
	s := server(t)
	if err := s.CreateDatabase(context.Background(), name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return s.URL(name)
}

// connect opens a connection to url, closed when t ends.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// mustExec runs SQL statements, failing t on error.
func mustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i] + "…"
		}
	}
	return s
}

// snapshot is the content of every table in the public schema: table name →
// "rows:md5 of all rows as text, in id order", plus the sequences' states.
func snapshot(t testing.TB, c *pgx.Conn) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := c.Query(ctx, `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S') ORDER BY 1`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	type rel struct{ name, kind string }
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.name, &r.kind); err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	snap := map[string]string{}
	for _, r := range rels {
		id := pgx.Identifier{r.name}.Sanitize()
		var q string
		if r.kind == "S" {
			q = `SELECT 1, last_value::text || '/' || is_called::text FROM ` + id
		} else {
			q = `SELECT count(*), coalesce(md5(string_agg(t::text, E'\n' ORDER BY id)), '') FROM ` + id + ` t`
		}
		var n int64
		var sum string
		if err := c.QueryRow(ctx, q).Scan(&n, &sum); err != nil {
			t.Fatalf("checksum %s: %v", r.name, err)
		}
		snap[r.name] = fmt.Sprintf("%d:%s", n, sum)
	}
	return snap
}

// diffSnapshots returns the differences between got and want, one line each.
func diffSnapshots(got, want map[string]string) []string {
	var d []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("%s: missing, want %s", k, w))
		} else if g != w {
			d = append(d, fmt.Sprintf("%s: got %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s: unexpected, got %s", k, g))
		}
	}
	return d
}
