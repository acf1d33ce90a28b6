package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The miniature AI Square: a user-data API whose storage moves from Cloud
// Storage to PostgreSQL, as the real service's migration does.
//
//   - GET /api/users/{email} and PUT /api/users/{email} (a JSON object);
//   - USE_POSTGRES=false (default): users are objects users/{email}.json in
//     the bucket $USER_DATA_BUCKET (default ai-square-user-data);
//   - USE_POSTGRES=true: users are rows of the users table in $DATABASE_URL;
//     a user not yet in PostgreSQL is read from Cloud Storage (the seed's
//     fallback); writes go to PostgreSQL;
//   - POST /internal/sync-gcs-from-postgres copies every PostgreSQL user to
//     Cloud Storage (the seed's sync:gcs-from-postgres), so writes made by a
//     canary that was rolled back reach the stable revision.
//
// Every user response carries X-User-Store: gcs, postgres or gcs-fallback.

// Environment variables of the user-data API.
const (
	EnvUsePostgres = "USE_POSTGRES"
	EnvDatabaseURL = "DATABASE_URL"
	EnvUserBucket  = "USER_DATA_BUCKET"
	// DefaultUserBucket is the bucket users live in by default.
	DefaultUserBucket = "ai-square-user-data"
	// HeaderUserStore says where a user was read from or written to.
	HeaderUserStore = "X-User-Store"
	// UsersTable is the PostgreSQL table of users.
	UsersTable = "users"
	// SyncPath is the post-rollback hook endpoint.
	SyncPath = "/internal/sync-gcs-from-postgres"
)

// UsersSchema creates the users table.
const UsersSchema = `CREATE TABLE IF NOT EXISTS users (
	email      text PRIMARY KEY,
	data       jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
)`

// UserObject is the Cloud Storage object name of a user.
func UserObject(email string) string { return "users/" + email + ".json" }

// userAPI serves the users endpoints; its clients are made on first use.
type userAPI struct {
	usePostgres bool
	databaseURL string
	bucket      string

	once  sync.Once
	gcs   *storage.Client
	pool  *pgxpool.Pool
	setup error
}

func (u *userAPI) init(ctx context.Context) error {
	u.once.Do(func() {
		var errs []error
		c, err := storage.NewClient(context.Background()) // honours STORAGE_EMULATOR_HOST
		if err != nil {
			errs = append(errs, fmt.Errorf("cloud storage: %w", err))
		}
		u.gcs = c
		if u.databaseURL != "" {
			p, err := pgxpool.New(context.Background(), u.databaseURL)
			if err == nil {
				_, err = p.Exec(ctx, UsersSchema)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("postgres: %w", err))
			}
			u.pool = p
		} else if u.usePostgres {
			errs = append(errs, fmt.Errorf("%s=true needs %s", EnvUsePostgres, EnvDatabaseURL))
		}
		u.setup = errors.Join(errs...)
	})
	return u.setup
}

func validEmail(s string) bool {
	return strings.Count(s, "@") == 1 && len(s) <= 254 && !strings.ContainsAny(s, "/\\ \t\n") && s[0] != '@' && s[len(s)-1] != '@'
}

func (u *userAPI) get(w http.ResponseWriter, r *http.Request) {
	email := r.PathValue("email")
	if !validEmail(email) {
		http.Error(w, "not an email address", http.StatusBadRequest)
		return
	}
	if err := u.init(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if u.usePostgres {
		var data []byte
		err := u.pool.QueryRow(r.Context(), `SELECT data FROM users WHERE email = $1`, email).Scan(&data)
		switch {
		case err == nil:
			writeUser(w, "postgres", data)
			return
		case !errors.Is(err, pgx.ErrNoRows):
			http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	rd, err := u.gcs.Bucket(u.bucket).Object(UserObject(email)).NewReader(r.Context())
	if errors.Is(err, storage.ErrObjectNotExist) {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "cloud storage: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		http.Error(w, "cloud storage: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	store := "gcs"
	if u.usePostgres {
		store = "gcs-fallback"
	}
	writeUser(w, store, data)
}

func writeUser(w http.ResponseWriter, store string, data []byte) {
	w.Header().Set(HeaderUserStore, store)
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}

func (u *userAPI) put(w http.ResponseWriter, r *http.Request) {
	email := r.PathValue("email")
	if !validEmail(email) {
		http.Error(w, "not an email address", http.StatusBadRequest)
		return
	}
	var user map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&user); err != nil {
		http.Error(w, "body must be a JSON object: "+err.Error(), http.StatusBadRequest)
		return
	}
	user["email"] = email
	data, _ := json.Marshal(user)
	if err := u.init(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if u.usePostgres {
		_, err := u.pool.Exec(r.Context(), `INSERT INTO users (email, data, updated_at) VALUES ($1, $2, now())
			ON CONFLICT (email) DO UPDATE SET data = EXCLUDED.data, updated_at = now()`, email, data)
		if err != nil {
			http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeUser(w, "postgres", data)
		return
	}
	if err := u.writeObject(r.Context(), email, data); err != nil {
		http.Error(w, "cloud storage: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeUser(w, "gcs", data)
}

func (u *userAPI) writeObject(ctx context.Context, email string, data []byte) error {
	wr := u.gcs.Bucket(u.bucket).Object(UserObject(email)).NewWriter(ctx)
	wr.ContentType = "application/json"
	if _, err := wr.Write(data); err != nil {
		wr.Close()
		return err
	}
	return wr.Close()
}

// sync copies every PostgreSQL user to Cloud Storage.
func (u *userAPI) sync(w http.ResponseWriter, r *http.Request) {
	if err := u.init(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if u.pool == nil {
		http.Error(w, EnvDatabaseURL+" is not set: nothing to sync from", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 4*time.Minute)
	defer cancel()
	rows, err := u.pool.Query(ctx, `SELECT email, data FROM users ORDER BY email`)
	if err != nil {
		http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	type row struct {
		email string
		data  []byte
	}
	var all []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.email, &x.data); err != nil {
			rows.Close()
			http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		all = append(all, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	for _, x := range all {
		if err := u.writeObject(ctx, x.email, x.data); err != nil {
			http.Error(w, fmt.Sprintf("cloud storage: user %s: %v", x.email, err), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"synced": len(all)})
}
