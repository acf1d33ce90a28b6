package cloudrun

import (
	"slices"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// lostFields are the RevisionTemplate fields the Revision resource does not
// carry: a template rebuilt from a Revision lacks them (revision is the
// Revision's name). docs/architecture.md lists them; a client upgrade that
// adds one fails this test until the list and the docs say so.
var lostFields = []protoreflect.Name{"revision", "health_check_disabled"}

func TestFieldsTheRevisionLacks(t *testing.T) {
	var got []protoreflect.Name
	fields := (&runpb.RevisionTemplate{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if f := fields.Get(i); revisionField(f) == nil {
			got = append(got, f.Name())
		}
	}
	if !slices.Equal(got, lostFields) {
		t.Errorf("RevisionTemplate fields the Revision lacks: got %v, want %v", got, lostFields)
	}
}

// TestTemplateFromRevisionCopiesEveryField: a template with every field set,
// turned into a Revision as Cloud Run shows it, comes back whole but for the
// fields the Revision lacks.
func TestTemplateFromRevisionCopiesEveryField(t *testing.T) {
	tmpl := &runpb.RevisionTemplate{}
	fill(t, tmpl.ProtoReflect())
	rev := &runpb.Revision{Name: "projects/p/locations/l/services/web/revisions/web-stable"}
	fields := tmpl.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		df := fields.Get(i)
		if sf := revisionField(df); sf != nil {
			rev.ProtoReflect().Set(sf, tmpl.ProtoReflect().Get(df))
		}
	}
	want := proto.CloneOf(tmpl)
	for _, name := range lostFields {
		want.ProtoReflect().Clear(fields.ByName(name))
	}
	want.Revision = "web-stable"
	if got := templateFromRevision(rev); !proto.Equal(got, want) {
		t.Errorf("templateFromRevision:\ngot  %v\nwant %v", got, want)
	}
}

// fill sets every field of m that is a scalar, an enum, a list or a map to a
// non-zero value, and every message field to an empty message. Oneofs get
// their first field.
func fill(t *testing.T, m protoreflect.Message) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() && m.WhichOneof(o) != nil {
			continue
		}
		switch {
		case f.IsMap():
			m.Mutable(f).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
		case f.IsList():
			l := m.Mutable(f).List()
			if f.Kind() == protoreflect.MessageKind {
				l.Append(protoreflect.ValueOfMessage(l.NewElement().Message()))
			} else {
				l.Append(scalar(t, f))
			}
		case f.Kind() == protoreflect.MessageKind:
			m.Mutable(f)
		default:
			m.Set(f, scalar(t, f))
		}
	}
}

func scalar(t *testing.T, f protoreflect.FieldDescriptor) protoreflect.Value {
	t.Helper()
	switch f.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	}
	t.Fatalf("field %s: kind %v not handled", f.FullName(), f.Kind())
	return protoreflect.Value{}
}
