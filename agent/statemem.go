package agent

import "sync"

// MemStore keeps State in memory, for simulators and tests. A new Agent
// on the same MemStore behaves like a restarted device.
type MemStore struct {
	mu    sync.Mutex
	state State
	saves int
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

// Load implements StateStore.
func (m *MemStore) Load() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.clone(), nil
}

// Save implements StateStore.
func (m *MemStore) Save(s State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = s.clone()
	m.saves++
	return nil
}

// Saves returns how many times Save was called.
func (m *MemStore) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}
