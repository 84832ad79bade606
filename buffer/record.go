package buffer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Record codec, version 1. All integers big-endian.
//
//	off  size  field
//	0    1     version (1)
//	1    1     flags (0; reserved)
//	2    8     seq (must equal the seq in the key)
//	10   8     appended at, Unix nanoseconds
//	18   2     topic length T
//	20   T     topic (UTF-8, non-empty)
//	20+T P     payload (the rest)
//	end  4     CRC-32C of every byte before it
//
// The checksum and the seq cross-check let the reader detect a damaged or
// misplaced value; such a record is skipped and counted, never delivered.
const (
	recordVersion     = 1
	recordHeader      = 20
	recordTrailer     = 4
	maxRecordOverhead = keyLen + recordHeader + recordTrailer + maxTopic
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt reports a record that does not decode. It stays inside the
// package: callers see the Corrupt counter, not the error.
var errCorrupt = errors.New("buffer: corrupt record")

// record is one decoded event. Topic and Payload alias the decoded buffer.
type record struct {
	Seq      uint64
	Appended time.Time
	Topic    string
	Payload  []byte
}

// recordSize is the encoded size of a record with this topic and payload.
func recordSize(topic string, payload []byte) int {
	return recordHeader + len(topic) + len(payload) + recordTrailer
}

// appendRecord encodes a record onto dst and returns the extended slice. The
// caller has checked the topic length.
func appendRecord(dst []byte, seq uint64, at time.Time, topic string, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, recordVersion, 0)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(at.UnixNano()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

// decodeRecord checks and decodes one encoded record. Payload aliases b; the
// topic is copied.
func decodeRecord(b []byte) (record, error) {
	return decodeRecordTopic(b, "")
}

// decodeRecordTopic is decodeRecord that returns topic itself as the
// record's topic when the bytes are equal, instead of a new string.
func decodeRecordTopic(b []byte, topic string) (record, error) {
	if len(b) < recordHeader+recordTrailer {
		return record{}, errCorrupt
	}
	body, sum := b[:len(b)-recordTrailer], binary.BigEndian.Uint32(b[len(b)-recordTrailer:])
	if crc32.Checksum(body, crcTable) != sum {
		return record{}, errCorrupt
	}
	if body[0] != recordVersion || body[1] != 0 {
		return record{}, errCorrupt
	}
	tl := int(binary.BigEndian.Uint16(body[18:20]))
	if tl == 0 || recordHeader+tl > len(body) {
		return record{}, errCorrupt
	}
	if t := body[recordHeader : recordHeader+tl]; string(t) != topic {
		topic = string(t)
	}
	return record{
		Seq:      binary.BigEndian.Uint64(body[2:10]),
		Appended: time.Unix(0, int64(binary.BigEndian.Uint64(body[10:18]))),
		Topic:    topic,
		Payload:  body[recordHeader+tl:],
	}, nil
}
