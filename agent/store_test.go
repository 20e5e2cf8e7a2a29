package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

func sampleState() State {
	p := 40
	return State{
		KEM: "x25519", DeviceKey: []byte("0123456789abcdef0123456789abcdef"), Token: "tok", Enrolled: "sensor-v1",
		Version: "1.0.0", SecurityFloor: 3, PendingFloor: 4,
		Work: &Work{Rollout: "ns/ro", Phase: PhaseDownloading, Header: make([]byte, 58), Chunks: 2, Bytes: 32768,
			Signed: assignment.Signed{Payload: []byte("{}"), Signature: []byte{1}, KeyID: "k"}, PreviousVersion: "1.0.0"},
		Pending: []PendingReport{{ID: "r1", Rollout: "ns/ro", State: protov1.StateDownloading, Progress: &p}},
	}
}

func TestStoresRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ds, err := NewDirStore(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]StateStore{"dir": ds, "mem": NewMemStore()} {
		t.Run(name, func(t *testing.T) {
			empty, err := s.Load()
			if err != nil || !reflect.DeepEqual(empty, State{}) {
				t.Fatalf("empty store: %+v %v", empty, err)
			}
			want := sampleState()
			if err := s.Save(want); err != nil {
				t.Fatal(err)
			}
			want.Pending[0].ID = "mutated after save" // the store keeps its own copy
			got, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			want.Pending[0].ID = "r1"
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
	// Files: private, no temporary files left, key apart from the JSON.
	for _, f := range []string{StateFile, KeyFile} {
		st, err := os.Stat(filepath.Join(dir, "state", f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, st)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "state", StateFile))
	if string(b) == "" || contains(b, "0123456789abcdef") {
		t.Fatal("state.json holds the private key")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "state"))
	if len(entries) != 2 {
		t.Fatalf("leftovers: %v", entries)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// A crash before the rename leaves the old state readable; a reopened
// store (a restarted device) sees the last completed save.
func TestDirStoreAtomicAndRestart(t *testing.T) {
	dir := t.TempDir()
	ds, _ := NewDirStore(dir)
	s := sampleState()
	if err := ds.Save(s); err != nil {
		t.Fatal(err)
	}
	// A torn write: a temporary file that never got renamed.
	if err := os.WriteFile(filepath.Join(dir, "."+StateFile+".tmp-123"), []byte(`{"token":"half`), 0o600); err != nil {
		t.Fatal(err)
	}
	reopened, _ := NewDirStore(dir)
	got, err := reopened.Load()
	if err != nil || got.Token != "tok" || got.Work == nil || got.Work.Chunks != 2 {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	s.SecurityFloor, s.Work = 4, nil
	if err := reopened.Save(s); err != nil {
		t.Fatal(err)
	}
	got, _ = (&DirStore{Dir: dir}).Load()
	if got.SecurityFloor != 4 || got.Work != nil || string(got.DeviceKey) != string(s.DeviceKey) {
		t.Fatalf("second save: %+v", got)
	}
	// A corrupt state file is an error, never a silent reset (which would
	// lower the security floor).
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reopened.Load(); err == nil {
		t.Fatal("corrupt state loaded")
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 429}, true},
		{&APIError{Status: 503}, true},
		{&APIError{Status: 409, Code: "final"}, false},
		{&APIError{Status: 401, Code: "unauthenticated"}, false},
		{refuse(RefuseChunkAuth, "tampered"), false},
		{errCanceled, false},
		{errShortBody, true},
	}
	for _, c := range cases {
		if got := retryable(c.err); got != c.want {
			t.Errorf("retryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	b := backoffState{cfg: Backoff{Initial: time.Second, Max: 8 * time.Second}}
	for i, max := range []time.Duration{1, 2, 4, 8, 8} {
		d := b.next(0)
		if d < max*time.Second/2 || d > max*time.Second {
			t.Errorf("attempt %d: %v, want in [%v, %v]", i, d, max*time.Second/2, max*time.Second)
		}
	}
	if d := b.next(time.Minute); d != time.Minute {
		t.Errorf("Retry-After ignored: %v", d)
	}
	if parseRetryAfter("7") != 7*time.Second || parseRetryAfter("x") != 0 {
		t.Error("parseRetryAfter")
	}
}
