// Package conformance holds the tests behind the protocol v1 conformance
// vectors in testdata/conformance (docs/conformance.md): every vector file is
// generated here from fixed keys and inputs, and every vector is checked
// against the Go implementation it describes (internal/envelope,
// protocol/v1/keywrap, protocol/v1/assignment, the agent's VerifyAssignment and
// the server's enrollment), so the files cannot drift from the code.
//
// Regenerate the files with
//
//	go test ./internal/conformance -update
//
// or go generate in this directory.
package conformance

//go:generate go test . -run ^TestVectorFiles$ -update
