// Package device is a device maker's program in its own module: it uses
// otaflow's device library (github.com/otaflow/otaflow/agent) and protocol
// packages (protocol/v1/...) through their public API only. Go refuses any
// import of otaflow's internal packages from here, so this module building
// and its test passing show the library stands alone. test/deps runs it.
package device
