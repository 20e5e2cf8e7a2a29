package vendorsig

// Ed25519StreamVerify runs the streaming Ed25519 verifier over msg written
// in the given pieces (lengths; the rest in one write), so tests can compare
// it with crypto/ed25519 on keys that ParsePublicKey refuses.
func Ed25519StreamVerify(pub, sig, msg []byte, pieces []int) bool {
	s, err := NewEd25519Stream(pub, sig)
	if err != nil {
		return false
	}
	for _, n := range pieces {
		n = min(n, len(msg))
		s.Write(msg[:n])
		msg = msg[n:]
	}
	s.Write(msg)
	return s.Verify() == nil
}
