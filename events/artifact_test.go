package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/events"
)

const (
	testRepo   = "us-west1-docker.pkg.dev/my-project/my-repo/hello-world"
	testDigest = "sha256:6ec128e26cd5a34c4bf9b2aa4a5b27bd1a9f0a45e1a7e6c2f2d1d4a3c6b5e8f9"
)

func TestDecodeArtifactFixtures(t *testing.T) {
	tests := []struct {
		fixture   string
		want      events.ArtifactNotification
		wantImage events.ImageRef
	}{
		{
			fixture:   "gcr-insert-digest.json",
			want:      events.ArtifactNotification{Action: events.ActionInsert, Digest: testRepo + "@" + testDigest},
			wantImage: events.ImageRef{Repository: testRepo, Digest: testDigest},
		},
		{
			fixture: "gcr-insert-tag.json",
			want: events.ArtifactNotification{
				Action: events.ActionInsert,
				Digest: testRepo + "@" + testDigest,
				Tag:    testRepo + ":1.1",
			},
			wantImage: events.ImageRef{Repository: testRepo, Tag: "1.1", Digest: testDigest},
		},
		{
			fixture:   "gcr-delete-tag.json",
			want:      events.ArtifactNotification{Action: events.ActionDelete, Tag: testRepo + ":1.1"},
			wantImage: events.ImageRef{Repository: testRepo, Tag: "1.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			got, err := events.DecodeArtifact(fixtureFromTestdata(t, tt.fixture))
			if err != nil {
				t.Fatalf("DecodeArtifact: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			image, err := got.Image()
			if err != nil {
				t.Fatalf("Image: %v", err)
			}
			if image != tt.wantImage {
				t.Errorf("got image %+v, want %+v", image, tt.wantImage)
			}
		})
	}
}

func TestDecodeArtifactAllowsUnknownFields(t *testing.T) {
	data := `{"action":"INSERT","digest":"` + testRepo + "@" + testDigest + `","extra":{"x":[1,2]}}`
	got, err := events.DecodeArtifact([]byte(data))
	if err != nil {
		t.Fatalf("DecodeArtifact: %v", err)
	}
	if got.Digest != testRepo+"@"+testDigest {
		t.Errorf("got digest %q, want %q", got.Digest, testRepo+"@"+testDigest)
	}
}

func TestDecodeArtifactRejects(t *testing.T) {
	digestRef := testRepo + "@" + testDigest
	tests := []struct {
		name      string
		data      string
		wantField string
	}{
		{name: "not JSON", data: `action=INSERT`, wantField: "(body)"},
		{name: "empty", data: ``, wantField: "(body)"},
		{name: "trailing garbage", data: `{"action":"INSERT","digest":"` + digestRef + `"} x`, wantField: "(body)"},
		{name: "array", data: `[]`, wantField: "(body)"},
		{name: "null", data: `null`, wantField: "action"},
		{name: "missing action", data: `{"digest":"` + digestRef + `"}`, wantField: "action"},
		{name: "unknown action", data: `{"action":"UPDATE","digest":"` + digestRef + `"}`, wantField: "action"},
		{name: "lower-case action", data: `{"action":"insert","digest":"` + digestRef + `"}`, wantField: "action"},
		{name: "action not a string", data: `{"action":1,"digest":"` + digestRef + `"}`, wantField: "action"},
		{name: "neither digest nor tag", data: `{"action":"INSERT"}`, wantField: "digest"},
		{name: "empty digest and tag", data: `{"action":"DELETE","digest":"","tag":""}`, wantField: "digest"},
		{name: "digest not a string", data: `{"action":"INSERT","digest":42}`, wantField: "digest"},
		{name: "bare digest", data: `{"action":"INSERT","digest":"` + testDigest + `"}`, wantField: "digest"},
		{name: "digest without host", data: `{"action":"INSERT","digest":"my-repo/hello@` + testDigest + `"}`, wantField: "digest"},
		{name: "digest short hex", data: `{"action":"INSERT","digest":"` + testRepo + `@sha256:6ec1"}`, wantField: "digest"},
		{name: "digest upper-case hex", data: `{"action":"INSERT","digest":"` + testRepo + "@" + strings.ToUpper(testDigest) + `"}`, wantField: "digest"},
		{name: "digest other algorithm", data: `{"action":"INSERT","digest":"` + testRepo + `@md5:` + strings.Repeat("a", 64) + `"}`, wantField: "digest"},
		{name: "digest field holds a tag", data: `{"action":"INSERT","digest":"` + testRepo + `:1.1"}`, wantField: "digest"},
		{name: "digest field holds tag and digest", data: `{"action":"INSERT","digest":"` + testRepo + `:1.1@` + testDigest + `"}`, wantField: "digest"},
		{name: "bare tag", data: `{"action":"DELETE","tag":"1.1"}`, wantField: "tag"},
		{name: "tag without tag", data: `{"action":"DELETE","tag":"` + testRepo + `"}`, wantField: "tag"},
		{name: "tag field holds a digest", data: `{"action":"DELETE","tag":"` + digestRef + `"}`, wantField: "tag"},
		{name: "tag with upper-case path", data: `{"action":"DELETE","tag":"gcr.io/My-Project/app:1"}`, wantField: "tag"},
		{name: "tag and digest of different images", data: `{"action":"INSERT","digest":"` + digestRef + `","tag":"gcr.io/p/other:1.1"}`, wantField: "tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeArtifact([]byte(tt.data))
			checkFieldError(t, err, "gcr notification", tt.wantField)
			if got != (events.ArtifactNotification{}) {
				t.Errorf("got %+v on error, want zero value", got)
			}
		})
	}
}

func TestDecodeArtifactErrorText(t *testing.T) {
	_, err := events.DecodeArtifact([]byte(`{"action":"INSERT","digest":"nope"}`))
	if err == nil {
		t.Fatal("got no error, want one")
	}
	if got, want := err.Error(), `gcr notification: field "digest": `; !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want prefix %q", got, want)
	}
}

func TestArtifactImageOfHandBuiltNotification(t *testing.T) {
	tests := []struct {
		name      string
		n         events.ArtifactNotification
		wantField string
	}{
		{name: "empty", n: events.ArtifactNotification{Action: events.ActionInsert}, wantField: "digest"},
		{name: "bad digest", n: events.ArtifactNotification{Digest: "x"}, wantField: "digest"},
		{name: "bad tag", n: events.ArtifactNotification{Tag: "x"}, wantField: "tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.n.Image()
			checkFieldError(t, err, "gcr notification", tt.wantField)
		})
	}
}

func TestParseImageRef(t *testing.T) {
	tests := []struct {
		in         string
		want       events.ImageRef
		wantString string
	}{
		{
			in:         testRepo + "@" + testDigest,
			want:       events.ImageRef{Repository: testRepo, Digest: testDigest},
			wantString: testRepo + "@" + testDigest,
		},
		{
			in:         testRepo + ":1.1",
			want:       events.ImageRef{Repository: testRepo, Tag: "1.1"},
			wantString: testRepo + ":1.1",
		},
		{
			in:         testRepo + ":1.1@" + testDigest,
			want:       events.ImageRef{Repository: testRepo, Tag: "1.1", Digest: testDigest},
			wantString: testRepo + "@" + testDigest,
		},
		{
			in:         "localhost:5000/a/b:tag",
			want:       events.ImageRef{Repository: "localhost:5000/a/b", Tag: "tag"},
			wantString: "localhost:5000/a/b:tag",
		},
		{
			in:         "localhost:5000/a/b@" + testDigest,
			want:       events.ImageRef{Repository: "localhost:5000/a/b", Digest: testDigest},
			wantString: "localhost:5000/a/b@" + testDigest,
		},
		{
			in:         "localhost/app:latest",
			want:       events.ImageRef{Repository: "localhost/app", Tag: "latest"},
			wantString: "localhost/app:latest",
		},
		{
			in:         "gcr.io/my-project/app:sha256-abc.sig",
			want:       events.ImageRef{Repository: "gcr.io/my-project/app", Tag: "sha256-abc.sig"},
			wantString: "gcr.io/my-project/app:sha256-abc.sig",
		},
		{
			in:         "registry.example.com:443/team/sub_group/app__x--y:V1_2-rc.3",
			want:       events.ImageRef{Repository: "registry.example.com:443/team/sub_group/app__x--y", Tag: "V1_2-rc.3"},
			wantString: "registry.example.com:443/team/sub_group/app__x--y:V1_2-rc.3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := events.ParseImageRef(tt.in)
			if err != nil {
				t.Fatalf("ParseImageRef: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.wantString {
				t.Errorf("got String() %q, want %q", s, tt.wantString)
			}
		})
	}
}

func TestParseImageRefRejects(t *testing.T) {
	tests := []struct {
		in        string
		wantField string
	}{
		{in: "", wantField: "repository"},
		{in: "nginx:latest", wantField: "repository"},
		{in: "library/nginx:latest", wantField: "repository"},
		{in: "localhost:5000", wantField: "repository"},
		{in: "gcr.io/p/app", wantField: "tag"},
		{in: "gcr.io/p/app:", wantField: "tag"},
		{in: "gcr.io/p/app:-x", wantField: "tag"},
		{in: "gcr.io/p/app:" + strings.Repeat("a", 129), wantField: "tag"},
		{in: "gcr.io/p/app@", wantField: "digest"},
		{in: "gcr.io/p/app@sha256:abc", wantField: "digest"},
		{in: "gcr.io/p/app@sha512:" + strings.Repeat("a", 128), wantField: "digest"},
		{in: "gcr.io/p/app@" + testDigest + "@" + testDigest, wantField: "digest"},
		{in: "gcr.io/p/App:1", wantField: "repository"},
		{in: "gcr.io//app:1", wantField: "repository"},
		{in: "gcr.io/p/app/:1", wantField: "repository"},
		{in: "gcr.io/p/-app:1", wantField: "repository"},
		{in: "gcr.io/:1", wantField: "repository"},
		{in: "-bad.io/p/app:1", wantField: "repository"},
		{in: "host.io:port/p/app:1", wantField: "repository"},
		{in: "gcr.io/" + strings.Repeat("a", 250) + ":1", wantField: "repository"},
		{in: " gcr.io/p/app:1", wantField: "repository"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := events.ParseImageRef(tt.in)
			checkFieldError(t, err, "image reference", tt.wantField)
			if got != (events.ImageRef{}) {
				t.Errorf("got %+v on error, want zero value", got)
			}
		})
	}
}

func TestImageRefStringWithoutTagOrDigest(t *testing.T) {
	r := events.ImageRef{Repository: "gcr.io/p/app"}
	if got, want := r.String(), "gcr.io/p/app"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func FuzzDecodeArtifact(f *testing.F) {
	for _, name := range []string{"gcr-insert-digest.json", "gcr-insert-tag.json", "gcr-delete-tag.json"} {
		f.Add(fixtureFromTestdata(f, name))
	}
	f.Add([]byte(`{"action":"INSERT","digest":"localhost:5000/a/b@` + testDigest + `","tag":"localhost:5000/a/b:x"}`))
	f.Add([]byte(`{"action":"UPDATE","digest":"x"}`))
	f.Add([]byte(`{"action":"DELETE"}`))
	f.Add([]byte(`{"action":"DELETE","tag":"gcr.io/p/a:1","digest":"gcr.io/p/b@` + testDigest + `"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := events.DecodeArtifact(data)
		if err != nil {
			checkFieldError(t, err, "gcr notification", fieldOf(err))
			return
		}
		if n.Action != events.ActionInsert && n.Action != events.ActionDelete {
			t.Fatalf("decoded unknown action %q", n.Action)
		}
		image, err := n.Image()
		if err != nil {
			t.Fatalf("Image of a decoded notification %+v: %v", n, err)
		}
		if n.Digest != "" && image.Digest == "" || n.Tag != "" && image.Tag == "" {
			t.Fatalf("Image() = %+v lost the digest or tag of %+v", image, n)
		}
		encoded, err := json.Marshal(n)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := events.DecodeArtifact(encoded)
		if err != nil {
			t.Fatalf("decode re-encoded %s: %v", encoded, err)
		}
		if again != n {
			t.Fatalf("got %+v after re-encoding, want %+v", again, n)
		}
	})
}

func FuzzParseImageRef(f *testing.F) {
	for _, name := range []string{"gcr-insert-digest.json", "gcr-insert-tag.json", "gcr-delete-tag.json"} {
		var n events.ArtifactNotification
		if err := json.Unmarshal(fixtureFromTestdata(f, name), &n); err != nil {
			f.Fatalf("fixture %s: %v", name, err)
		}
		for _, s := range []string{n.Digest, n.Tag} {
			if s != "" {
				f.Add(s)
			}
		}
	}
	f.Add(testRepo + ":1.1@" + testDigest)
	f.Add("localhost:5000/a/b:tag")
	f.Add("localhost:5000")
	f.Add("nginx:latest")
	f.Add("gcr.io/p/app@sha256:abc")
	f.Add("gcr.io/p/app:-x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := events.ParseImageRef(s)
		if err != nil {
			checkFieldError(t, err, "image reference", fieldOf(err))
			return
		}
		if r.Repository == "" || r.Tag == "" && r.Digest == "" {
			t.Fatalf("ParseImageRef(%q) = %+v: want a repository and a tag or digest", s, r)
		}
		canonical := r.String()
		if r.Tag == "" || r.Digest == "" {
			if canonical != s {
				t.Fatalf("String() = %q, want the input %q", canonical, s)
			}
		}
		again, err := events.ParseImageRef(canonical)
		if err != nil {
			t.Fatalf("ParseImageRef(String() = %q): %v", canonical, err)
		}
		want := r
		if r.Digest != "" {
			want.Tag = ""
		}
		if again != want {
			t.Fatalf("ParseImageRef(%q) = %+v, want %+v", canonical, again, want)
		}
	})
}

// fieldOf returns the Field of a *events.FieldError, or a marker that no field matches.
func fieldOf(err error) string {
	if fe, ok := err.(*events.FieldError); ok {
		return fe.Field
	}
	return "<not a *events.FieldError>"
}
