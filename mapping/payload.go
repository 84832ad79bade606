package mapping

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxPayload is the platform's payload limit in bytes (protocol.md §2.8).
const MaxPayload = 131072

// AppendPayload appends the JSON payload of design.md §4 to dst:
// {"d":{...},"ts":"<read time, RFC 3339 UTC with milliseconds>","seq":N}.
func (o Output) AppendPayload(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"d":{`...)
	switch {
	case o.Status != nil:
		dst = appendStatus(dst, o.Status)
	default:
		for i, f := range o.Fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, f.Name)
			dst = append(dst, ':')
			dst = appendValue(dst, f.Value, f.Point)
		}
	}
	dst = append(dst, `},"ts":"`...)
	dst = o.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

func appendStatus(dst []byte, s *Status) []byte {
	dst = append(dst, `"status":`...)
	if s.Up {
		dst = append(dst, `"up"`...)
	} else {
		dst = append(dst, `"down"`...)
	}
	if s.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, s.Error)
	}
	if s.Dropped > 0 {
		dst = append(dst, `,"dropped_events":`...)
		dst = strconv.AppendUint(dst, s.Dropped, 10)
	}
	if len(s.Failed) > 0 {
		dst = append(dst, `,"failed_points":[`...)
		for i, name := range s.Failed {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, name)
		}
		dst = append(dst, ']')
	}
	return dst
}

// appendValue writes a value with the JSON type its point fixes: bool,
// integer for unscaled integers, number otherwise, string for strings.
// NaN and infinities have no JSON form and are written as null.
func appendValue(dst []byte, v Value, p *Point) []byte {
	switch v.Kind {
	case KindBool:
		return strconv.AppendBool(dst, v.B)
	case KindInt:
		return strconv.AppendInt(dst, v.I, 10)
	case KindUint:
		return strconv.AppendUint(dst, v.U, 10)
	case KindString:
		return appendString(dst, v.S)
	}
	f := v.F
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	switch {
	case p != nil && p.Decimals >= 0:
		return strconv.AppendFloat(dst, f, 'f', p.Decimals, 64)
	case p != nil && p.Type == TypeFloat32 && !p.Scaled():
		return strconv.AppendFloat(dst, f, 'g', -1, 32)
	case p != nil && p.Scaled():
		// raw*scale carries binary noise (2314*0.1 = 231.40000000000003);
		// twelve significant digits are more than any field device resolves.
		digits := 12
		if p.Type == TypeFloat32 {
			digits = 7
		}
		return strconv.AppendFloat(dst, f, 'g', digits, 64)
	default:
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	}
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// Timestamp formats t like the payloads do; exported for tests and logs.
func Timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
