package monitoringemu

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// SamplePostgres counts connections per database in a PostgreSQL server
// (pg_stat_activity rows with a datname) — what Cloud SQL's num_backends reports. The
// sampling connection itself is counted, as Cloud SQL's own monitoring connection is.
func SamplePostgres(ctx context.Context, databaseURL string) (map[string]int64, error) {
	c, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("sample postgres: connect: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `SELECT datname, count(*) FROM pg_stat_activity WHERE datname IS NOT NULL GROUP BY datname`)
	if err != nil {
		return nil, fmt.Errorf("sample postgres: query pg_stat_activity: %w", err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var db string
		var n int64
		if err := rows.Scan(&db, &n); err != nil {
			return nil, fmt.Errorf("sample postgres: scan: %w", err)
		}
		out[db] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample postgres: read pg_stat_activity: %w", err)
	}
	return out, nil
}

// MaxConnections returns SHOW max_connections of the server (what the Cloud SQL database
// flag max_connections holds).
func MaxConnections(ctx context.Context, databaseURL string) (int, error) {
	c, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("max connections: connect: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var s string
	if err := c.QueryRow(ctx, `SHOW max_connections`).Scan(&s); err != nil {
		return 0, fmt.Errorf("max connections: SHOW max_connections: %w", err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("max connections: parse %q: %w", s, err)
	}
	return n, nil
}
