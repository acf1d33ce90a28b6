package runemu

import "testing"

func TestRequestRingKeepsNewest(t *testing.T) {
	cases := []struct {
		capacity, added int
		wantFirst       int
	}{
		{capacity: 3, added: 2, wantFirst: 0},
		{capacity: 3, added: 3, wantFirst: 0},
		{capacity: 3, added: 7, wantFirst: 4},
		{capacity: 1, added: 5, wantFirst: 4},
	}
	for _, tc := range cases {
		l := newRequestLog(tc.capacity)
		for i := range tc.added {
			l.record(Request{Service: "svc", Status: i})
		}
		got := l.list("svc")
		if want := min(tc.capacity, tc.added); len(got) != want {
			t.Fatalf("cap %d, %d added: kept %d, want %d", tc.capacity, tc.added, len(got), want)
		}
		for i, r := range got {
			if r.Status != tc.wantFirst+i {
				t.Errorf("cap %d, %d added: kept[%d] = %d, want %d", tc.capacity, tc.added, i, r.Status, tc.wantFirst+i)
			}
		}
	}
	if got := newRequestLog(3).list("other"); got != nil {
		t.Errorf("unknown service: %v, want nil", got)
	}
}
