package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// ErrMalformed classifies a payload that can never be decoded, however often it is
// redelivered: a permanent failure. Every *FieldError unwraps to it, so a consumer can
// acknowledge (and log) instead of retrying with errors.Is(err, events.ErrMalformed).
var ErrMalformed = errors.New("malformed event")

// FieldError reports why a payload failed to decode, naming the offending field.
type FieldError struct {
	// Source names the payload kind, e.g. "gcr notification" or "monitoring incident".
	Source string
	// Field is the JSON path of the offending field (e.g. "incident.state", "digest"), or
	// "(body)" when the payload as a whole is wrong (empty, not JSON, not an object).
	Field string
	// Problem says what is wrong with the field.
	Problem string
}

// Error reads `<source>: field "<field>": <problem>` (just `<source>: <problem>` if Field
// is empty).
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Source + ": " + e.Problem
	}
	return fmt.Sprintf("%s: field %q: %s", e.Source, e.Field, e.Problem)
}

// Unwrap returns ErrMalformed: a decoding error is permanent.
func (e *FieldError) Unwrap() error { return ErrMalformed }

// bodyField is the Field of a *FieldError about the payload as a whole.
const bodyField = "(body)"

// jsonFieldError turns an encoding/json error into a *FieldError. prefix is prepended to
// the field path reported by encoding/json (for JSON nested in another document); with
// neither, the field is bodyField.
func jsonFieldError(source, prefix string, err error) *FieldError {
	fe := jsonFieldErrorAt(source, prefix, err)
	if fe.Field == "" {
		fe.Field = bodyField
	}
	return fe
}

// jsonFieldErrorAt is jsonFieldError without the bodyField default.
func jsonFieldErrorAt(source, prefix string, err error) *FieldError {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := joinFieldPath(prefix, typeErr.Field)
		return &FieldError{
			Source:  source,
			Field:   field,
			Problem: fmt.Sprintf("got JSON %s, want %s", typeErr.Value, jsonKind(typeErr.Type)),
		}
	case errors.As(err, &syntaxErr):
		return &FieldError{
			Source:  source,
			Field:   prefix,
			Problem: fmt.Sprintf("invalid JSON at byte %d: %v", syntaxErr.Offset, err),
		}
	default:
		return &FieldError{Source: source, Field: prefix, Problem: fmt.Sprintf("invalid JSON: %v", err)}
	}
}

// joinFieldPath joins two JSON field paths with a dot, skipping empty parts.
func joinFieldPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	default:
		return prefix + "." + field
	}
}

// jsonKind describes a Go type as the JSON value it is decoded from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	default:
		return t.String()
	}
}
