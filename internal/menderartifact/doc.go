// Package menderartifact reads the header of a Mender artifact (.mender):
// its name, the device types it is compatible with, the types of its payloads
// and what it provides, without reading the payload data.
//
// A Mender artifact (format versions 2 and 3) is an uncompressed tar whose
// entries come in this order:
//
//	version                  {"format":"mender","version":3}
//	manifest                 "<sha256 hex>  <path>" lines
//	manifest.sig             optional, signature of manifest
//	manifest-augment         optional (v3), checksums of the augmented parts
//	header.tar[.gz|.xz|.zst] header-info, scripts/*, headers/NNNN/type-info, ...
//	header-augment.tar[...]  optional (v3), not covered by the signature
//	data/NNNN.tar[...]       the payloads
//
// Parse stops at the first data/ entry, so the header can be read from the
// first bytes of the file alone; Sniffer keeps those bytes while the image is
// streamed elsewhere. The SHA-256 of version and of the header archives is
// checked against the manifest; the signature in manifest.sig is not verified
// here. Every read is bounded (MaxHeaderSize, MaxFileSize), so hostile input
// cannot make Parse allocate much more than those limits.
package menderartifact
