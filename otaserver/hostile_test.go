package otaserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/devicetest"
)

// Hostile clients on loopback against the real handler and the same
// http.Server settings cmd/otaserver uses, with the timeouts scaled down:
// slow-header and slow-body clients, thousands of idle connections,
// oversize headers and bodies. A well-behaved device keeps being served
// within a bound, and memory stays bounded.

var testLimits = otaserver.HTTPLimits{
	ReadHeaderTimeout: 3 * time.Second,
	ReadTimeout:       4 * time.Second,
	WriteTimeout:      5 * time.Second,
	IdleTimeout:       3 * time.Second,
	MaxConnections:    4000,
}

// hostileServer serves h's handler on a loopback listener with limits.
func hostileServer(t *testing.T, h *harness, l otaserver.HTTPLimits) (string, *otaserver.ConnLimiter) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := otaserver.LimitListener(ln, l.MaxConnections)
	srv := otaserver.NewHTTPServer("", h.handler, l)
	go func() { _ = srv.Serve(lim) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String(), lim
}

// goodDevice checks in repeatedly and returns the slowest answer.
func goodDevice(t *testing.T, d *devicetest.Device, n int, pause time.Duration) time.Duration {
	t.Helper()
	var worst time.Duration
	for i := range n {
		t0 := time.Now()
		r, _, err := d.Check(ctx, "")
		el := time.Since(t0)
		if err != nil || (r.Status != 200 && r.Status != 204) {
			t.Fatalf("well-behaved check %d: %v %d %s", i, err, r.Status, r.Body)
		}
		worst = max(worst, el)
		time.Sleep(pause)
	}
	return worst
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	host := strings.TrimPrefix(addr, "http://")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return conns
}

// closedWithin waits until the server closed c (a read returns EOF or a
// reset), failing after limit.
func closedWithin(c net.Conn, limit time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // an error answer (408 and the like) precedes the close
		}
		var ne net.Error
		return !(errorsAs(err, &ne) && ne.Timeout())
	}
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

// TestHostileClients: 2000 idle connections, 50 slow-header and 50
// slow-body clients at once. The well-behaved device is served quickly
// throughout, the attackers are disconnected by the timeouts, and the
// server's memory grows by a bounded amount.
func TestHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of loopback connections")
	}
	h := newHarness(t, 1000)
	addr, lim := hostileServer(t, h, testLimits)
	good, _ := devicetest.New(addr, "good", "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	if r, err := good.Enroll(ctx, bootstrap); err != nil || r.Status != 201 {
		t.Fatalf("enroll: %v %d", err, r.Status)
	}
	baseline := goodDevice(t, good, 5, 0)
	heap0 := heapInUse()

	idle := dialN(t, addr, 2000)
	slowHeader := dialN(t, addr, 50)
	slowBody := dialN(t, addr, 50)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range slowHeader {
		wg.Add(1)
		go func() { // a byte of headers every 100 ms, never done
			defer wg.Done()
			req := fmt.Sprintf("GET /v1/update?version=1.0.0&securityFloor=0 HTTP/1.1\r\nHost: x\r\nX-Pad-%d: ", i)
			for j := 0; ; j++ {
				if _, err := c.Write([]byte{req[min(j, len(req)-1)]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	for _, c := range slowBody {
		wg.Add(1)
		go func() { // full headers, then a byte of body every 100 ms
			defer wg.Done()
			hdr := "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
			if _, err := c.Write([]byte(hdr)); err != nil {
				return
			}
			for {
				if _, err := c.Write([]byte("{")); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	for t0 := time.Now(); lim.Active() < 2100 && time.Since(t0) < testLimits.ReadHeaderTimeout/2; {
		time.Sleep(20 * time.Millisecond)
	}
	if a := lim.Active(); a < 2000 {
		t.Fatalf("only %d connections accepted", a)
	}
	heap1 := heapInUse()
	worst := goodDevice(t, good, 10, 50*time.Millisecond)
	t.Logf("baseline check %s; under 2100 hostile connections: worst %s; heap+stacks %d MiB -> %d MiB (%.1f KiB per connection)",
		baseline.Round(time.Millisecond), worst.Round(time.Millisecond), heap0>>20, heap1>>20, float64(heap1-heap0)/2100/1024)
	if worst > time.Second {
		t.Errorf("well-behaved device took %s under attack", worst)
	}
	if grow := int64(heap1) - int64(heap0); grow > 96<<20 {
		t.Errorf("memory grew by %d MiB for 2100 connections", grow>>20)
	}

	// The timeouts disconnect every attacker: silent and slow-header
	// connections after ReadHeaderTimeout, slow bodies after ReadTimeout.
	slack := 2 * time.Second
	for i, c := range slowHeader {
		if !closedWithin(c, testLimits.ReadHeaderTimeout+slack) {
			t.Fatalf("slow-header client %d still connected", i)
		}
	}
	for i, c := range slowBody {
		if !closedWithin(c, testLimits.ReadTimeout+slack) {
			t.Fatalf("slow-body client %d still connected", i)
		}
	}
	for i, c := range idle[:100] {
		if !closedWithin(c, testLimits.ReadHeaderTimeout+slack) {
			t.Fatalf("idle client %d still connected", i)
		}
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for lim.Active() > 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if a := lim.Active(); a > 5 {
		t.Fatalf("%d connections still open after the timeouts", a)
	}
	goodDevice(t, good, 3, 0)
}

// TestOversizeRequests: headers over 16 KiB get 431 and bodies over 16 KiB
// 413, without reading the rest.
func TestOversizeRequests(t *testing.T) {
	h := newHarness(t, 1000)
	addr, _ := hostileServer(t, h, testLimits)
	c := dialN(t, addr, 1)[0]
	big := strings.Repeat("a", 64<<10)
	fmt.Fprintf(c, "GET /v1/update HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversize header: %v %v", err, resp)
	}
	// A body announced at 1 GiB is refused after 16 KiB.
	c = dialN(t, addr, 1)[0]
	fmt.Fprintf(c, "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<30)
	go func() { _, _ = io.Copy(c, io.LimitReader(zeros{}, 1<<20)) }()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize body: %v %v", err, resp)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestConnectionLimit: with --max-connections reached by idle clients, a
// device's connection waits in the accept queue and is served as soon as
// the idle ones time out; the server never holds more than the limit.
func TestConnectionLimit(t *testing.T) {
	h := newHarness(t, 1000)
	l := testLimits
	l.MaxConnections, l.ReadHeaderTimeout = 100, time.Second
	addr, lim := hostileServer(t, h, l)
	good, _ := devicetest.New(addr, "good", "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
	if r, err := good.Enroll(ctx, bootstrap); err != nil || r.Status != 201 {
		t.Fatalf("enroll: %v %d", err, r.Status)
	}
	good.HTTP.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	_ = dialN(t, addr, 300) // 100 accepted, 200 queued
	time.Sleep(200 * time.Millisecond)
	if a := lim.Active(); a != 100 {
		t.Fatalf("%d connections open, limit 100", a)
	}
	t0 := time.Now()
	worst := goodDevice(t, good, 1, 0)
	t.Logf("check behind 300 idle connections (limit 100): %s", time.Since(t0).Round(time.Millisecond))
	// Each batch of 100 idle connections is closed after ReadHeaderTimeout.
	if worst > 3*l.ReadHeaderTimeout+2*time.Second {
		t.Fatalf("served after %s", worst)
	}
	if p := lim.Peak(); p > 100 {
		t.Fatalf("peak %d connections, limit 100", p)
	}
}
