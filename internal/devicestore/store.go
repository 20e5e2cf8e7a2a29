// Package devicestore defines the OTA server's durable device state: enrolled
// devices, each device's progress in each rollout, the rollout fleets with
// their wave ranks, processed report IDs and cached wrapped keys.
//
// Handlers only see the Store interface, so a PostgreSQL implementation can
// be added beside the embedded SQLite one (package sqlite); package storetest
// is the conformance suite both must pass.
package devicestore

import (
	"context"
	"errors"
	"time"

	"github.com/otaflow/otaflow/internal/rollout"
)

var (
	// ErrNotFound reports a device or record that does not exist.
	ErrNotFound = errors.New("devicestore: not found")
	// ErrKeyMismatch reports an enrollment of a known device ID with another
	// public key.
	ErrKeyMismatch = errors.New("devicestore: device enrolled with another key")
	// ErrTenantMismatch reports an enrollment of a known device ID through
	// a credential of another namespace: a device never changes tenant.
	ErrTenantMismatch = errors.New("devicestore: device enrolled in another namespace")
	// ErrQuotaExceeded reports a new device refused because its enrollment
	// credential already enrolled its maximum number of devices.
	ErrQuotaExceeded = errors.New("devicestore: enrollment quota reached")
	// ErrDuplicateReport reports a report ID the device already sent.
	ErrDuplicateReport = errors.New("devicestore: report already processed")
	// ErrDeviceDeleted reports a record write for a device that no longer
	// exists: it was decommissioned while its request was in flight.
	ErrDeviceDeleted = errors.New("devicestore: device deleted")
	// ErrUnavailable wraps errors meaning the database cannot be reached
	// for now (down, restarting, out of connections, connection lost):
	// the same call may succeed later, so callers answer "retry later"
	// (HTTP 503 with Retry-After) rather than a server error.
	ErrUnavailable = errors.New("devicestore: database unavailable")
)

// Device is one enrolled device.
type Device struct {
	ID            string
	Type          string
	Labels        map[string]string // read-only: stores may share label maps between devices
	KEM           string
	PublicKey     []byte
	TokenHash     []byte // SHA-256 of the bearer token; the token itself is never stored
	Version       string // running firmware version, as last reported
	SecurityFloor int64
	EnrolledAt    time.Time
	LastSeen      time.Time
	// Seq increases on every enrollment or re-enrollment, so fleet sync
	// reads only devices changed since its last pass.
	Seq int64
	// Namespace is the device's tenant: the namespace of the enrollment
	// credential it first enrolled through; "" for the cluster-wide
	// enrollment Secret. It never changes.
	Namespace string
	// Enrollment names the DeviceEnrollment (in Namespace) the device
	// first enrolled through, whose quota it counts against; "" for the
	// cluster-wide enrollment Secret. Re-enrollments keep it.
	Enrollment string
}

// DeviceRef is the part of a device fleet membership depends on.
type DeviceRef struct {
	ID        string
	Namespace string
	Type      string
	Labels    map[string]string // read-only, as Device.Labels
	Seq       int64
}

// Record is one device's progress in one rollout.
type Record struct {
	RolloutUID      string
	DeviceID        string
	Wave            int
	State           rollout.State
	Release         string // namespace/name of the offered release
	Version         string // version of the offered release
	Blob            string // encrypted SHA-256 of the offered release
	PreviousVersion string // version the device ran when offered
	OfferedAt       time.Time
	UpdatedAt       time.Time
	Reason          string
	// RollbackRelease and RollbackBlob are set once the previous release
	// was offered after an abort.
	RollbackRelease string
	RollbackBlob    string
	// OfferBoot is the device's boot (from the check-in's boot parameter)
	// when it was offered the release; "" when it did not say.
	OfferBoot string
}

// FleetMember is a device in a rollout's fleet with its rank.
type FleetMember struct {
	DeviceID string
	Rank     uint64
	Wave     int
}

// Report is a device status report, applied at most once per ID.
type Report struct {
	DeviceID   string
	ReportID   string
	RolloutUID string
	At         time.Time
}

// Failure is one device failure kept for status.recentFailures.
type Failure struct {
	DeviceID string
	Wave     int
	Reason   string
	At       time.Time
}

// RecordWrite is a record to store and, when not nil, the failure to log
// with it.
type RecordWrite struct {
	Record  Record
	Failure *Failure
}

// WaveCounts are one wave's counters.
type WaveCounts struct {
	Targeted int64
	// Offline counts members with no record not seen since the cutoff.
	Offline int64
	// States counts records by state.
	States map[rollout.State]int64
}

// Counts are a rollout's counters. Only non-zero counters are present:
// a wave is in Waves when one of its counters is not zero, a state in
// States when its count is not zero, and Skipped is nil when nothing was
// skipped, so two Counts of the same data compare equal (reflect.DeepEqual).
type Counts struct {
	FleetSize int64
	Conflicts int64
	Waves     map[int]*WaveCounts
	// Skipped counts skipped records by reason.
	Skipped map[string]int64
}

// Wave returns wave i's counters, adding them if missing.
func (c *Counts) Wave(i int) *WaveCounts {
	if c.Waves == nil {
		c.Waves = map[int]*WaveCounts{}
	}
	w := c.Waves[i]
	if w == nil {
		w = &WaveCounts{States: map[rollout.State]int64{}}
		c.Waves[i] = w
	}
	return w
}

// Normalize drops zero counters (see Counts).
func (c *Counts) Normalize() {
	if c.Waves == nil {
		c.Waves = map[int]*WaveCounts{}
	}
	for i, w := range c.Waves {
		for st, n := range w.States {
			if n == 0 {
				delete(w.States, st)
			}
		}
		if w.Targeted == 0 && w.Offline == 0 && len(w.States) == 0 {
			delete(c.Waves, i)
		}
	}
	for r, n := range c.Skipped {
		if n == 0 {
			delete(c.Skipped, r)
		}
	}
	if len(c.Skipped) == 0 {
		c.Skipped = nil
	}
}

// RolloutState is what the reporter keeps about a rollout between cycles,
// in the store so that a new leader resumes where the last one stopped and
// every replica serves the same wave cutoffs.
type RolloutState struct {
	// SelectorKey identifies the selector and device types FleetSeq was
	// synced for: under another key the fleet sync starts over.
	SelectorKey string
	// FleetSeq is the highest device Seq synced into the fleet.
	FleetSeq int64
	// Cutoffs are the wave cutoffs last computed (inclusive highest rank
	// per wave); nil until first computed.
	Cutoffs []uint64
	// UpdatedAt is when the state was written.
	UpdatedAt time.Time
}

// DeviceFilter narrows ListDevices; zero fields match every device.
type DeviceFilter struct {
	// Namespace limits the list to one tenant ("" is the devices of the
	// cluster-wide enrollment Secret) unless AllNamespaces is set.
	Namespace     string
	AllNamespaces bool
	// Version matches the running version exactly.
	Version string
	// Type matches the device type exactly.
	Type string
	// RolloutUID matches devices with a record in the rollout.
	RolloutUID string
	// State matches devices with a record in this state: in RolloutUID's
	// rollout when set, else in any rollout.
	State rollout.State
}

// Store is the device store. Implementations must be safe for concurrent
// use; every method is a bounded number of indexed lookups or writes, never
// a scan of all devices (fleet sync pages through devices by Seq), except
// Recount (verification) and ForgetRollout (a rollout's own rows).
type Store interface {
	// Enroll creates the device, or rotates the token (and updates type,
	// labels, version and floor) of a device enrolled with the same public
	// key; created tells which. Another public key for a known ID fails
	// with ErrKeyMismatch, another Namespace with ErrTenantMismatch (a
	// re-enrollment keeps the device's Namespace and Enrollment).
	Enroll(ctx context.Context, d Device) (dev Device, created bool, err error)
	// EnrollWithin is Enroll, except that a new device is refused with
	// ErrQuotaExceeded when maxDevices (> 0) devices already enrolled
	// through d's (Namespace, Enrollment). The check and the insert are
	// one transaction, exact across replicas. maxDevices <= 0: no limit.
	EnrollWithin(ctx context.Context, d Device, maxDevices int64) (dev Device, created bool, err error)
	// EnrolledThrough counts the devices enrolled through an enrollment
	// credential (the quota's count).
	EnrolledThrough(ctx context.Context, namespace, enrollment string) (int64, error)
	// DeviceByToken returns the device whose token hashes to tokenHash.
	DeviceByToken(ctx context.Context, tokenHash []byte) (Device, error)
	// Device returns the device with the given ID.
	Device(ctx context.Context, id string) (Device, error)
	// SetRunning records the version and security floor a device reports.
	SetRunning(ctx context.Context, id, version string, floor int64, at time.Time) error
	// Touch records last-seen times in one batch.
	Touch(ctx context.Context, seen map[string]time.Time) error
	// DevicesSince pages through devices with Seq > after, by Seq.
	DevicesSince(ctx context.Context, after int64, limit int) ([]DeviceRef, error)
	// ListDevices returns at most limit (> 0, else an error) devices
	// matching f whose ID is greater than after, ordered by ID compared
	// byte by byte (whatever the database's collation): a page of an
	// indexed walk, so listing every device page by page holds one page in
	// memory.
	ListDevices(ctx context.Context, f DeviceFilter, after string, limit int) ([]Device, error)
	// RecordsOf returns the records of several devices at once, keyed by
	// device ID (devices without records are absent).
	RecordsOf(ctx context.Context, deviceIDs []string) (map[string][]Record, error)
	// DeleteDevice decommissions a device: the device (so its token),
	// its records, fleet memberships and wrapped keys are removed in one
	// transaction, and every counter it contributed to is decremented, so
	// it leaves every fleet and count. Its rollouts' failure logs keep
	// their history. ErrNotFound when there is no such device. A device
	// deleted while a reporter syncs fleets is not added back: fleet sync
	// only adds devices that exist; a check-in in flight writes nothing
	// after it (UpdateRecords fails with ErrDeviceDeleted).
	DeleteDevice(ctx context.Context, id string) error

	// Record returns a device's record in a rollout.
	Record(ctx context.Context, rolloutUID, deviceID string) (Record, error)
	// Records returns every record of a device (one per rollout it was in).
	Records(ctx context.Context, deviceID string) ([]Record, error)
	// PutRecord writes a record and pins the device to its wave in the
	// rollout's fleet. When failure is not nil it is appended to the
	// rollout's failure log in the same transaction.
	PutRecord(ctx context.Context, r Record, failure *Failure) error
	// UpdateRecords reads the device's records and stores the writes
	// decide returns, in one transaction: a check-in decides on records no
	// other write can change before its own writes land, so a delayed
	// check-in never overwrites a newer state. decide may run more than
	// once and must not have side effects; an error from it stores nothing.
	// Writes for a device that does not exist (deleted since the request
	// authenticated it) fail with ErrDeviceDeleted and store nothing.
	UpdateRecords(ctx context.Context, deviceID string, decide func(recs []Record) ([]RecordWrite, error)) error
	// ApplyReport runs update on the device's record and stores the result
	// and the report ID in one transaction. A report ID seen before fails
	// with ErrDuplicateReport and changes nothing. update may return an
	// error to refuse the report; nothing is stored then.
	ApplyReport(ctx context.Context, rep Report, update func(Record) (Record, *Failure, error)) (Record, error)

	// SyncFleet adds (or re-ranks) and removes fleet members in one
	// transaction. Pinned members keep their wave.
	SyncFleet(ctx context.Context, rolloutUID string, upsert []FleetMember, remove []string) error
	// NthRank returns the n-th lowest rank (1-based) in the rollout's
	// fleet; ok is false when the fleet has fewer than n devices.
	NthRank(ctx context.Context, rolloutUID string, n int64) (rank uint64, ok bool, err error)
	// AssignWaves sets the wave of every unpinned member from the
	// cumulative cutoffs (inclusive max rank per wave).
	AssignWaves(ctx context.Context, rolloutUID string, cutoffs []uint64) error
	// SetConflict marks or clears a device of the rollout as held by an
	// older rollout.
	SetConflict(ctx context.Context, rolloutUID, deviceID string, conflict bool) error
	// ExpireOffers marks records still in progress that were offered
	// before deadline as timed out, and returns how many.
	ExpireOffers(ctx context.Context, rolloutUID string, deadline, now time.Time) (int64, error)
	// Counts returns the rollout's counters; fleet members without a
	// record last seen before offlineBefore count as offline. Counters are
	// maintained by every write, so Counts reads a bounded number of rows
	// whatever the fleet size; only the offline counters move with
	// offlineBefore, at a cost proportional to the devices whose last-seen
	// time lies between the previous call's offlineBefore and this one's.
	Counts(ctx context.Context, rolloutUID string, offlineBefore time.Time) (Counts, error)
	// Recount computes what Counts returns by scanning the rollout's
	// fleet and records (cost linear in the fleet), for verification.
	Recount(ctx context.Context, rolloutUID string, offlineBefore time.Time) (Counts, error)
	// RolloutState returns the rollout's reporter state, ErrNotFound when
	// none was written.
	RolloutState(ctx context.Context, rolloutUID string) (RolloutState, error)
	// PutRolloutState writes the rollout's reporter state (UpdatedAt is
	// set by the caller).
	PutRolloutState(ctx context.Context, rolloutUID string, st RolloutState) error
	// RecentFailures returns the newest failures first.
	RecentFailures(ctx context.Context, rolloutUID string, limit int) ([]Failure, error)
	// ForgetRollout deletes everything about a rollout that no longer
	// exists, its counters and reporter state included.
	ForgetRollout(ctx context.Context, rolloutUID string) error

	// WrappedKey returns the cached wrapped content key of a device for a blob.
	WrappedKey(ctx context.Context, deviceID, blob string) ([]byte, error)
	// PutWrappedKey caches a wrapped key; an assignment to the blob exists
	// exactly when its wrapped key does.
	PutWrappedKey(ctx context.Context, deviceID, blob string, wrapped []byte) error
	// PruneReports forgets report IDs processed before t.
	PruneReports(ctx context.Context, before time.Time) (int64, error)

	// Ping checks the store is usable (readiness).
	Ping(ctx context.Context) error
	Close() error
}
