package buffer

import "encoding/binary"

// Key prefixes. See the package documentation for the layout.
const (
	pfxMeta  = 0x00
	pfxName  = 0x01
	pfxHead  = 0x02
	pfxEvent = 0x10

	keyLen = 1 + 4 + 8 // pfxEvent, qid, seq

	// blockBits is the reclamation granularity: space is given back in
	// aligned blocks of 1<<blockBits seqs (a key prefix one byte shorter).
	blockBits = 8
	blockSize = 1 << blockBits
)

var keyFormat = []byte{pfxMeta, 'f'}

// formatVersion is stored under keyFormat; Open refuses a newer one.
const formatVersion = 1

func nameKey(name string) []byte {
	return append([]byte{pfxName}, name...)
}

func headKey(qid uint32) []byte {
	k := []byte{pfxHead, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(k[1:], qid)
	return k
}

// queuePrefix is the prefix of every event key of a queue.
func queuePrefix(qid uint32) []byte {
	k := []byte{pfxEvent, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(k[1:], qid)
	return k
}

func eventKey(qid uint32, seq uint64) []byte {
	k := make([]byte, keyLen)
	k[0] = pfxEvent
	binary.BigEndian.PutUint32(k[1:], qid)
	binary.BigEndian.PutUint64(k[5:], seq)
	return k
}

// rangePrefixes covers the seqs [from, to) of a queue, both multiples of
// blockSize, with as few key prefixes as possible: each prefix stands for an
// aligned block of 256^k seqs (k >= 1), like a CIDR decomposition. It
// returns at most max prefixes and the end (exclusive) of what they cover.
func rangePrefixes(qid uint32, from, to uint64, max int) (prefixes [][]byte, end uint64) {
	for from < to && len(prefixes) < max {
		size, drop := uint64(blockSize), 1 // block size in seqs, bytes dropped from the key
		for drop < 7 && from%(size<<8) == 0 && to-from >= size<<8 {
			size <<= 8
			drop++
		}
		prefixes = append(prefixes, eventKey(qid, from)[:keyLen-drop])
		from += size
	}
	return prefixes, from
}

// parseEventKey returns the seq of an event key of the queue, or ok=false
// for a key of the wrong shape.
func parseEventKey(k []byte) (seq uint64, ok bool) {
	if len(k) != keyLen || k[0] != pfxEvent {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[5:]), true
}
