package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// notifyChannel is the channel the devices table's trigger (migration 3)
// notifies, with the changed device's ID as payload ("" for all devices).
const notifyChannel = "otaflow_devices"

// DefaultDeviceCacheSize is the device cache's bound unless configured:
// a fleet of a million devices fits.
const DefaultDeviceCacheSize = 1 << 20

const (
	// listenHeartbeat is how long the listener waits for a notification
	// before checking its connection is alive, bounding how long a
	// silently broken connection (no error, no FIN) goes unnoticed.
	listenHeartbeat = 2 * time.Second
	// listenRetryMax bounds the delay between reconnection attempts.
	listenRetryMax = 2 * time.Second
)

// deviceCache holds devices DeviceByToken read, keyed by token hash, kept
// correct across replicas by LISTEN/NOTIFY (see the package comment).
type deviceCache struct {
	size int

	mu sync.RWMutex
	// live is true while the listener is connected and listening; the
	// cache is neither read nor filled otherwise.
	live bool
	// gen counts invalidations (notifications, local writes, clears): a
	// fill whose read started before one is dropped, since the row it
	// read may be the one the invalidation was about.
	gen     uint64
	byToken map[[32]byte]devicestore.Device
	byID    map[string][32]byte
	// noRecords holds the cached devices that had no record when read: a
	// record insert notifies (migration 4) and evicts them like any change.
	noRecords map[string]bool
	// labels shares decoded label sets between devices, by their JSON.
	labels map[string]map[string]string

	pid    atomic.Uint32 // the listener's backend PID while connected, for tests
	cancel context.CancelFunc
	done   chan struct{}
}

// maxLabelSets bounds the shared label sets; devices with others keep
// their own map.
const maxLabelSets = 1 << 14

func newDeviceCache(size int) *deviceCache {
	return &deviceCache{
		size:      size,
		byToken:   map[[32]byte]devicestore.Device{},
		byID:      map[string][32]byte{},
		noRecords: map[string]bool{},
		labels:    map[string]map[string]string{},
	}
}

// get returns the cached device for tokenHash.
func (c *deviceCache) get(tokenHash []byte) (devicestore.Device, bool) {
	if len(tokenHash) != 32 {
		return devicestore.Device{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.live {
		return devicestore.Device{}, false
	}
	d, ok := c.byToken[[32]byte(tokenHash)]
	return d, ok
}

// begin is called before reading a device to cache: put with the
// generation it returns stores the device only if nothing was invalidated
// meanwhile. ok is false while the cache is bypassed.
func (c *deviceCache) begin() (gen uint64, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen, c.live
}

// put caches d, read after begin returned gen, evicting an arbitrary
// device when full; noRecords says it had no record when read.
func (c *deviceCache) put(gen uint64, d devicestore.Device, noRecords bool) {
	if len(d.TokenHash) != 32 || c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || gen != c.gen {
		return
	}
	key := [32]byte(d.TokenHash)
	if old, ok := c.byID[d.ID]; ok {
		delete(c.byToken, old)
	} else if len(c.byToken) >= c.size {
		for t, e := range c.byToken { // map order: an arbitrary device
			delete(c.byToken, t)
			delete(c.byID, e.ID)
			delete(c.noRecords, e.ID)
			break
		}
	}
	c.byToken[key] = d
	c.byID[d.ID] = key
	if noRecords {
		c.noRecords[d.ID] = true
	} else {
		delete(c.noRecords, d.ID)
	}
}

// hasNoRecords reports whether the device is cached as having no record.
func (c *deviceCache) hasNoRecords(id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.live && c.noRecords[id]
}

// decodeLabels decodes a device's labels (JSON), sharing the map with
// the cached devices that have the same.
func (c *deviceCache) decodeLabels(raw []byte) (map[string]string, error) {
	c.mu.RLock()
	s, ok := c.labels[string(raw)]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	l, err := decLabels(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.labels[string(raw)]; ok {
		return s, nil
	}
	if len(c.labels) < maxLabelSets {
		c.labels[string(raw)] = l
	}
	return l, nil
}

// invalidate drops the device with the given ID; "" drops every device.
func (c *deviceCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if id == "" {
		c.clearLocked()
		return
	}
	if t, ok := c.byID[id]; ok {
		delete(c.byID, id)
		delete(c.byToken, t)
	}
	delete(c.noRecords, id)
}

// touch moves cached last-seen times forward, as Touch did in the
// database.
func (c *deviceCache) touch(seen map[string]time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, at := range seen {
		t, ok := c.byID[id]
		if !ok {
			continue
		}
		if d := c.byToken[t]; at.After(d.LastSeen) {
			d.LastSeen = fromNanos(nanos(at))
			c.byToken[t] = d
		}
	}
}

// setLive empties the cache and starts (live) or stops using it.
func (c *deviceCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = live
	c.clearLocked()
}

func (c *deviceCache) clearLocked() {
	clear(c.byToken)
	clear(c.byID)
	clear(c.noRecords)
	clear(c.labels)
}

func (c *deviceCache) isLive() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.live
}

func (c *deviceCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byToken)
}

// start runs the listener until stop.
func (c *deviceCache) start(cc *pgx.ConnConfig) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go c.run(ctx, cc)
}

// stop stops the listener and waits for it.
func (c *deviceCache) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
}

// run keeps one listening connection, reconnecting with jittered,
// growing delays; the cache is bypassed whenever it is not listening.
func (c *deviceCache) run(ctx context.Context, cc *pgx.ConnConfig) {
	defer close(c.done)
	delay := 50 * time.Millisecond
	for {
		listened, _ := c.listen(ctx, cc) // the error only says why it reconnects
		c.setLive(false)
		c.pid.Store(0)
		if ctx.Err() != nil {
			return
		}
		if listened {
			delay = 50 * time.Millisecond
		}
		t := time.NewTimer(rand.N(delay) + delay/2)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, listenRetryMax)
	}
}

// listen connects, LISTENs, and only then clears and uses the cache (any
// change committed from then on is notified), evicting notified devices
// until the connection fails or ctx is done. listened tells whether it
// got as far as listening.
func (c *deviceCache) listen(ctx context.Context, cc *pgx.ConnConfig) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return false, fmt.Errorf("postgres: device cache: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false, fmt.Errorf("postgres: device cache: listen: %w", err)
	}
	c.pid.Store(conn.PgConn().PID())
	c.setLive(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenHeartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			c.invalidate(n.Payload)
			continue
		case ctx.Err() != nil:
			return true, ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed():
			return true, fmt.Errorf("postgres: device cache: wait for notification: %w", err)
		}
		// Quiet for a while: check the connection still works.
		pctx, cancel := context.WithTimeout(ctx, listenHeartbeat)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return true, fmt.Errorf("postgres: device cache: heartbeat: %w", err)
		}
	}
}
