// Package devindex is an in-memory index of enrolled devices: everything a
// check-in needs (the device behind a bearer token, its type, labels,
// running version and floor, whether it has rollout records) answered
// without touching the database.
//
// A store that is the only writer of its data (the embedded SQLite store
// owns its file) keeps the index exact by loading it once at open and
// updating it after each committed write; it is not a cache with expiry.
// Entries hold no Go pointers (strings live in an append-only arena, maps
// are keyed by 64-bit hashes), so a million devices cost about 190 MB and
// almost nothing for the garbage collector to scan.
package devindex

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// entry is one device. Pointer-free on purpose.
type entry struct {
	token    [32]byte // SHA-256 of the bearer token
	id       ref      // ID, then the public key, in the arena
	idLen    uint16
	keyLen   uint16
	prof     uint32 // shared (type, labels), or noProfile
	profRef  ref    // "type\x00labels JSON" in the arena when prof == noProfile
	profLen  uint16
	kem      uint16 // interned
	version  uint32 // interned
	records  bool   // the device has (or had) a rollout record
	tenant   uint32 // interned (namespace, enrollment); fits the padding after records
	floor    int64
	enrolled int64 // unix nanoseconds; 0 is the zero time
	seen     int64
	seq      int64
}

const (
	pageBits = 12 // entries are kept in pages of 4096, so growth never copies them all
	pageSize = 1 << pageBits

	noProfile = ^uint32(0)
	// maxProfiles bounds the shared (type, labels) sets. A fleet has few;
	// past the bound, label sets are stored per device and decoded per read.
	maxProfiles = 1 << 16
)

type profile struct {
	typ    string
	labels map[string]string // shared, read-only
}

// Index is safe for concurrent use.
type Index struct {
	mu    sync.RWMutex
	pages [][]entry
	n     int
	// free holds the slots of deleted devices, reused by the next Puts.
	free []uint32

	// byToken is keyed by the first 8 bytes of the token hash, byID by a
	// 64-bit hash of the ID; a hit is confirmed against the entry. The rare
	// second key with the same 64 bits goes to the overflow maps.
	byToken   map[uint64]uint32
	byID      map[uint64]uint32
	overToken map[[32]byte]uint32
	overID    map[string]uint32

	arena    arena
	strs     interner
	tenants  interner // "namespace\x00enrollment": a fleet has few
	profs    []profile
	profByKy map[string]uint32

	seed     maphash.Seed
	maxProfs int
	// idHash and tokenKey are replaced in tests to force collisions.
	idHash   func(string) uint64
	tokenKey func([32]byte) uint64
}

// New returns an empty index.
func New() *Index {
	x := &Index{
		byToken: map[uint64]uint32{}, byID: map[uint64]uint32{},
		overToken: map[[32]byte]uint32{}, overID: map[string]uint32{},
		profByKy: map[string]uint32{}, seed: maphash.MakeSeed(), maxProfs: maxProfiles,
	}
	x.idHash = func(s string) uint64 { return maphash.String(x.seed, s) }
	x.tokenKey = func(t [32]byte) uint64 { return binary.LittleEndian.Uint64(t[:8]) }
	return x
}

func (x *Index) at(slot uint32) *entry { return &x.pages[slot>>pageBits][slot&(pageSize-1)] }

func (x *Index) idOf(e *entry) string { return x.arena.str(e.id, int(e.idLen)) }

func (x *Index) slotByID(id string) (uint32, bool) {
	if s, ok := x.byID[x.idHash(id)]; ok && x.idOf(x.at(s)) == id {
		return s, true
	}
	s, ok := x.overID[id]
	return s, ok
}

func (x *Index) slotByToken(t [32]byte) (uint32, bool) {
	if s, ok := x.byToken[x.tokenKey(t)]; ok && x.at(s).token == t {
		return s, true
	}
	s, ok := x.overToken[t]
	return s, ok
}

func (x *Index) addToken(t [32]byte, slot uint32) {
	k := x.tokenKey(t)
	if s, ok := x.byToken[k]; ok && s != slot {
		x.overToken[t] = slot
		return
	}
	x.byToken[k] = slot
}

func (x *Index) removeToken(t [32]byte, slot uint32) {
	if s, ok := x.byToken[x.tokenKey(t)]; ok && s == slot {
		delete(x.byToken, x.tokenKey(t))
		return
	}
	if s, ok := x.overToken[t]; ok && s == slot {
		delete(x.overToken, t)
	}
}

// Check reports whether Put can index d; stores call it before writing a
// device, so a committed device is never one the index refuses.
func Check(d devicestore.Device) error {
	_, err := check(d)
	return err
}

func check(d devicestore.Device) ([]byte, error) {
	if err := checkTenant(d.Namespace, d.Enrollment); err != nil {
		return nil, fmt.Errorf("device %s: %w", d.ID, err)
	}
	if len(d.TokenHash) != 32 {
		return nil, fmt.Errorf("device %s: token hash has %d bytes, want 32 (SHA-256)", d.ID, len(d.TokenHash))
	}
	if len(d.ID)+len(d.PublicKey) > maxItem {
		return nil, fmt.Errorf("device %s: ID and public key exceed %d bytes", d.ID, maxItem)
	}
	labels, err := json.Marshal(nonNil(d.Labels))
	if err != nil {
		return nil, fmt.Errorf("device %s: labels: %w", d.ID, err)
	}
	if len(d.Type)+1+len(labels) > maxItem {
		return nil, fmt.Errorf("device %s: type and labels exceed %d bytes", d.ID, maxItem)
	}
	return labels, nil
}

// checkTenant validates a device's tenant as Kubernetes names: the
// namespace a DNS-1123 label, the DeviceEnrollment's name a DNS-1123
// subdomain, and no enrollment outside a namespace. "" (the cluster-wide
// enrollment Secret) is valid for both.
func checkTenant(namespace, enrollment string) error {
	if namespace != "" {
		if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", namespace, strings.Join(errs, "; "))
		}
	}
	if enrollment == "" {
		return nil
	}
	if namespace == "" {
		return fmt.Errorf("enrollment %q has no namespace", enrollment)
	}
	if errs := validation.IsDNS1123Subdomain(enrollment); len(errs) > 0 {
		return fmt.Errorf("enrollment %q: %s", enrollment, strings.Join(errs, "; "))
	}
	return nil
}

// Put inserts the device, or replaces an indexed device with the same ID
// (re-enrollment: the old token stops resolving). The ID and public key
// of an indexed device never change (stores refuse another key).
func (x *Index) Put(d devicestore.Device) error { return x.put(d, true) }

// Add indexes the device only if its ID is not indexed yet (a bulk
// import racing a re-enrollment must not overwrite the newer state).
func (x *Index) Add(d devicestore.Device) error { return x.put(d, false) }

func (x *Index) put(d devicestore.Device, replace bool) error {
	labels, err := check(d)
	if err != nil {
		return fmt.Errorf("devindex: %w", err)
	}
	var tok [32]byte
	copy(tok[:], d.TokenHash)
	x.mu.Lock()
	defer x.mu.Unlock()
	slot, known := x.slotByID(d.ID)
	if known && !replace {
		return nil
	}
	var e *entry
	if known {
		e = x.at(slot)
		if !bytes.Equal(x.keyOf(e), d.PublicKey) {
			return fmt.Errorf("devindex: device %s: public key differs from the indexed one", d.ID)
		}
		if e.token != tok {
			x.removeToken(e.token, slot)
			e.token = tok
			x.addToken(tok, slot)
		}
	} else {
		slot = x.newSlot()
		e = x.at(slot)
		buf := make([]byte, 0, len(d.ID)+len(d.PublicKey))
		buf = append(append(buf, d.ID...), d.PublicKey...)
		e.id, e.idLen, e.keyLen = x.arena.add(buf), uint16(len(d.ID)), uint16(len(d.PublicKey))
		e.token = tok
		if s, ok := x.byID[x.idHash(d.ID)]; ok && s != slot {
			x.overID[d.ID] = slot
		} else {
			x.byID[x.idHash(d.ID)] = slot
		}
		x.addToken(tok, slot)
	}
	if err := x.setProfile(e, d.Type, labels); err != nil {
		return err
	}
	e.kem = uint16(x.strs.id(d.KEM))
	e.tenant = x.tenants.id(d.Namespace + "\x00" + d.Enrollment)
	e.version = x.strs.id(d.Version)
	e.floor = d.SecurityFloor
	e.enrolled, e.seen, e.seq = nanos(d.EnrolledAt), nanos(d.LastSeen), d.Seq
	return nil
}

// newSlot returns a zeroed slot: a deleted device's, else a new one.
func (x *Index) newSlot() uint32 {
	if n := len(x.free); n > 0 {
		slot := x.free[n-1]
		x.free = x.free[:n-1]
		return slot
	}
	if x.n == len(x.pages)*pageSize {
		x.pages = append(x.pages, make([]entry, pageSize))
	}
	slot := uint32(x.n)
	x.n++
	return slot
}

// Delete removes the device (its token stops resolving) and reports
// whether it was indexed. Its slot is reused; its ID and key stay in the
// arena, which only grows: deletions are rare.
func (x *Index) Delete(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	slot, ok := x.slotByID(id)
	if !ok {
		return false
	}
	e := x.at(slot)
	x.removeToken(e.token, slot)
	h := x.idHash(id)
	if s, ok := x.byID[h]; ok && s == slot {
		delete(x.byID, h)
	} else {
		delete(x.overID, id)
	}
	*e = entry{}
	x.free = append(x.free, slot)
	return true
}

func (x *Index) setProfile(e *entry, typ string, labels []byte) error {
	key := typ + "\x00" + string(labels)
	if p, ok := x.profByKy[key]; ok {
		e.prof = p
		return nil
	}
	if len(x.profs) < x.maxProfs {
		var l map[string]string
		if err := json.Unmarshal(labels, &l); err != nil {
			return fmt.Errorf("devindex: labels: %w", err)
		}
		p := uint32(len(x.profs))
		x.profs = append(x.profs, profile{typ: typ, labels: l})
		x.profByKy[key] = p
		e.prof = p
		return nil
	}
	e.prof, e.profRef, e.profLen = noProfile, x.arena.add([]byte(key)), uint16(len(key))
	return nil
}

func (x *Index) keyOf(e *entry) []byte {
	return x.arena.bytes(e.id, int(e.idLen)+int(e.keyLen))[e.idLen:]
}

// device builds the Device of e; callers hold the read lock.
func (x *Index) device(e *entry) (devicestore.Device, error) {
	d := devicestore.Device{
		ID: x.idOf(e), KEM: x.strs.strs[e.kem],
		PublicKey: bytes.Clone(x.keyOf(e)), TokenHash: bytes.Clone(e.token[:]),
		Version: x.strs.strs[e.version], SecurityFloor: e.floor,
		EnrolledAt: fromNanos(e.enrolled), LastSeen: fromNanos(e.seen), Seq: e.seq,
	}
	d.Namespace, d.Enrollment, _ = strings.Cut(x.tenants.strs[e.tenant], "\x00")
	if e.prof != noProfile {
		p := &x.profs[e.prof]
		d.Type, d.Labels = p.typ, p.labels
		return d, nil
	}
	typ, labels, _ := bytes.Cut(x.arena.bytes(e.profRef, int(e.profLen)), []byte{0})
	d.Type = string(typ)
	if err := json.Unmarshal(labels, &d.Labels); err != nil {
		return d, fmt.Errorf("devindex: device %s: labels: %w", d.ID, err)
	}
	return d, nil
}

// ByToken returns the device whose bearer token hashes to tokenHash.
func (x *Index) ByToken(tokenHash []byte) (devicestore.Device, bool, error) {
	var t [32]byte
	if len(tokenHash) != len(t) {
		return devicestore.Device{}, false, nil
	}
	copy(t[:], tokenHash)
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.slotByToken(t)
	if !ok {
		return devicestore.Device{}, false, nil
	}
	d, err := x.device(x.at(s))
	return d, err == nil, err
}

// ByID returns the device with the given ID.
func (x *Index) ByID(id string) (devicestore.Device, bool, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.slotByID(id)
	if !ok {
		return devicestore.Device{}, false, nil
	}
	d, err := x.device(x.at(s))
	return d, err == nil, err
}

// SetRunning records a reported version and floor; last-seen only moves
// forward. It reports whether the device is indexed.
func (x *Index) SetRunning(id, version string, floor int64, at time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.slotByID(id)
	if !ok {
		return false
	}
	e := x.at(s)
	e.version, e.floor = x.strs.id(version), floor
	e.seen = max(e.seen, nanos(at))
	return true
}

// Touch moves last-seen times forward.
func (x *Index) Touch(seen map[string]time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, at := range seen {
		if s, ok := x.slotByID(id); ok {
			e := x.at(s)
			e.seen = max(e.seen, nanos(at))
		}
	}
}

// SeenAt returns the device's last-seen time in unix nanoseconds, and
// whether the device is indexed.
func (x *Index) SeenAt(id string) (int64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.slotByID(id)
	if !ok {
		return 0, false
	}
	return x.at(s).seen, true
}

// Known reports whether the device is indexed.
func (x *Index) Known(id string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.slotByID(id)
	return ok
}

// MarkRecords notes that the device has a rollout record. Stores call it
// before the record's write commits, so a reader that sees no mark can
// trust that the device has no record.
func (x *Index) MarkRecords(id string) {
	// Every report and offer calls this; most find the mark set already,
	// and a read lock does not hold check-ins back.
	x.mu.RLock()
	s, ok := x.slotByID(id)
	done := !ok || x.at(s).records
	x.mu.RUnlock()
	if done {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if s, ok := x.slotByID(id); ok {
		x.at(s).records = true
	}
}

// MayHaveRecords reports whether the device may have rollout records:
// false means an indexed device certainly has none. Devices the index
// does not know are not tracked, so for them it is always true.
func (x *Index) MayHaveRecords(id string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.slotByID(id)
	return !ok || x.at(s).records
}

// Stats describe the index's size.
type Stats struct {
	Devices  int
	Profiles int
	// Tenants counts the distinct (namespace, enrollment) pairs.
	Tenants int
	// Bytes estimates the memory held: entries, arena and maps.
	Bytes int64
}

// Stats returns the index's size.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	const entrySize, mapSlot = 96, 24 // mapSlot: key, value, control byte and load factor
	b := int64(len(x.pages))*pageSize*entrySize + x.arena.size() +
		int64(len(x.byToken)+len(x.byID))*mapSlot
	return Stats{Devices: x.n - len(x.free), Profiles: len(x.profs), Tenants: len(x.tenants.strs), Bytes: b}
}

func nonNil(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}

func nanos(t time.Time) int64     { return devicestore.UnixNanos(t) }
func fromNanos(n int64) time.Time { return devicestore.FromUnixNanos(n) }
