package serialline

import "bytes"

// splitter cuts frames out of a byte stream by the Framing rules. It does
// no I/O, so it can be fuzzed. Frames returned by next alias its buffer and
// are valid until the next call to write.
type splitter struct {
	start, delim []byte
	length       int
	maxLength    int

	buf      []byte
	synced   bool // Start was seen and the frame content begins at buf[0]
	skipping bool // the rest of a frame that was too long is dropped up to its delimiter

	noise  uint64 // bytes dropped outside frames
	broken uint64 // frames dropped: too long, or cut short by a new Start
}

func newSplitter(f Framing) *splitter {
	s := &splitter{start: []byte(f.Start), delim: []byte(f.Delimiter), length: f.Length, maxLength: f.MaxLength}
	if s.maxLength <= 0 {
		s.maxLength = DefaultMaxLength
	}
	return s
}

// write appends received bytes.
func (s *splitter) write(p []byte) { s.buf = append(s.buf, p...) }

// reset forgets a partial frame: a frame that had begun counts as broken,
// other bytes as noise.
func (s *splitter) reset() {
	if s.pending() {
		s.broken++
	} else if !s.skipping {
		s.noise += uint64(len(s.buf))
	}
	s.buf, s.synced, s.skipping = s.buf[:0], false, false
}

// pending reports whether a frame has begun but not ended.
func (s *splitter) pending() bool {
	return len(s.buf) > 0 && !s.skipping && (len(s.start) == 0 || s.synced)
}

// next returns the next complete frame, without Start and Delimiter, or
// nil when more bytes are needed.
func (s *splitter) next() []byte {
	for {
		if s.skipping {
			j := bytes.Index(s.buf, s.delim)
			if j < 0 {
				if keep := len(s.delim) - 1; len(s.buf) > keep {
					s.buf = s.buf[len(s.buf)-keep:]
				}
				return nil
			}
			s.buf, s.skipping = s.buf[j+len(s.delim):], false
		}
		if len(s.start) > 0 && !s.synced {
			i := bytes.Index(s.buf, s.start)
			if i < 0 {
				// Keep what could be the beginning of a Start.
				if drop := len(s.buf) - (len(s.start) - 1); drop > 0 {
					s.noise += uint64(drop)
					s.buf = s.buf[drop:]
				}
				return nil
			}
			s.noise += uint64(i)
			s.buf = s.buf[i+len(s.start):]
			s.synced = true
		}
		if s.length > 0 {
			if len(s.buf) < s.length {
				return nil
			}
			f := s.buf[:s.length:s.length]
			s.buf, s.synced = s.buf[s.length:], false
			return f
		}
		j := bytes.Index(s.buf, s.delim)
		if j < 0 {
			if len(s.buf) > s.maxLength+len(s.delim) {
				// Too long to be a frame: drop it up to its delimiter.
				s.broken++
				s.synced, s.skipping = false, true
				continue
			}
			return nil
		}
		f := s.buf[:j:j]
		s.buf, s.synced = s.buf[j+len(s.delim):], false
		if len(s.start) > 0 {
			// A Start inside the frame means the frame before it was cut
			// short: keep only the last one.
			if k := bytes.LastIndex(f, s.start); k >= 0 {
				s.broken++
				f = f[k+len(s.start):]
			}
		}
		if len(f) > s.maxLength {
			s.broken++
			continue
		}
		return f
	}
}
