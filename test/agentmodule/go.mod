module example.com/otaflow-device

go 1.26.0

require github.com/otaflow/otaflow v0.0.0

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
)

// The module under test, from this checkout.
replace github.com/otaflow/otaflow => ../..
