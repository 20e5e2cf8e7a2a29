package swupdatetest

import (
	"fmt"
	"io"
)

// A .swu image is a cpio archive in the "new ASCII with CRC" format
// (magic 070702, `cpio -H crc`), sw-description first. SWUpdate verifies
// each entry's check field, the 32-bit sum of its data bytes, for this
// format (core/cpio_utils.c swupdate_verify_chksum). Hand-written, see
// docs/decisions.md §30.

const (
	cpioMagicCRC = "070702"
	cpioTrailer  = "TRAILER!!!"
	cpioModeReg  = 0o100644
	cpioBlock    = 512
)

type cpioEntry struct {
	name string
	data []byte
}

// cpioSum is the check field: the byte sum modulo 2^32.
func cpioSum(data []byte) uint32 {
	var s uint32
	for _, b := range data {
		s += uint32(b)
	}
	return s
}

// writeCPIO writes entries and the trailer in the crc format. Fields that
// SWUpdate ignores (owner, times, devices) are zero.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	var off int64
	put := func(p []byte) error {
		n, err := w.Write(p)
		off += int64(n)
		return err
	}
	pad := func() error {
		if r := off % 4; r != 0 {
			return put(make([]byte, 4-r))
		}
		return nil
	}
	record := func(ino int, mode uint32, nlink int, name string, data []byte) error {
		if name == "" || len(name) > 0xffff {
			return fmt.Errorf("cpio: bad entry name %q", name)
		}
		if int64(len(data)) > 0xffffffff {
			return fmt.Errorf("cpio: %s: %d bytes do not fit the format", name, len(data))
		}
		hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			cpioMagicCRC, ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, cpioSum(data))
		if err := put([]byte(hdr + name + "\x00")); err != nil {
			return err
		}
		if err := pad(); err != nil {
			return err
		}
		if err := put(data); err != nil {
			return err
		}
		return pad()
	}
	for i, e := range entries {
		if e.name == cpioTrailer {
			return fmt.Errorf("cpio: entry name %q is reserved", e.name)
		}
		if err := record(i+1, cpioModeReg, 1, e.name, e.data); err != nil {
			return fmt.Errorf("cpio: write %s: %w", e.name, err)
		}
	}
	if err := record(0, 0, 1, cpioTrailer, nil); err != nil {
		return fmt.Errorf("cpio: write trailer: %w", err)
	}
	// GNU cpio fills the last 512-byte block; SWUpdate expects (and
	// skips) that padding after the trailer.
	if r := off % cpioBlock; r != 0 {
		if err := put(make([]byte, cpioBlock-r)); err != nil {
			return fmt.Errorf("cpio: write padding: %w", err)
		}
	}
	return nil
}
