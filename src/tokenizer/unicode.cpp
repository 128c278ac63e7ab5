#include "icae/tokenizer/unicode.h"

namespace icae::tok {

bool next_utf8(std::string_view s, size_t& pos, char32_t& cp) {
  const size_t n = s.size();
  if (pos >= n) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const unsigned char c0 = p[0];
  if (c0 < 0x80) {
    cp = c0;
    pos += 1;
    return true;
  }
  const size_t left = n - pos;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    if (left < 2 || (p[1] & 0xC0) != 0x80) return false;
    cp = (char32_t(c0 & 0x1F) << 6) | (p[1] & 0x3F);
    pos += 2;
    return true;
  }
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return false;
    if (c0 == 0xE0 && p[1] < 0xA0) return false;   // overlong
    if (c0 == 0xED && p[1] >= 0xA0) return false;  // surrogate
    cp = (char32_t(c0 & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    pos += 3;
    return true;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return false;
    if (c0 == 0xF0 && p[1] < 0x90) return false;   // overlong
    if (c0 == 0xF4 && p[1] >= 0x90) return false;  // above U+10FFFF
    cp = (char32_t(c0 & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) |
         (p[3] & 0x3F);
    pos += 4;
    return true;
  }
  return false;
}

size_t find_invalid_utf8(std::string_view s) {
  size_t pos = 0;
  const size_t n = s.size();
  while (pos < n) {
    // Fast path over ASCII, 8 bytes at a time.
    while (pos + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + pos, 8);
      if (w & 0x8080808080808080ull) break;
      pos += 8;
    }
    if (pos >= n) break;
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp;
    if (!next_utf8(s, pos, cp)) return pos;
  }
  return std::string_view::npos;
}

// Length of the maximal subpart of an ill-formed sequence at s[pos] (Unicode 3.9, table 3-7).
static size_t invalid_subpart_len(std::string_view s, size_t pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const size_t left = s.size() - pos;
  const unsigned char c0 = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) need = 2;
  else if (c0 >= 0xE0 && c0 <= 0xEF) {
    need = 3;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    need = 4;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  size_t i = 1;
  if (i < left && p[i] >= lo && p[i] <= hi) {
    ++i;
    while (i < need && i < left && (p[i] & 0xC0) == 0x80) ++i;
  }
  return i;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    char32_t cp;
    if (next_utf8(s, pos, cp)) {
      out.append(s.data() + start, pos - start);
    } else {
      out += "\xEF\xBF\xBD";
      pos += invalid_subpart_len(s, pos);
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {
struct ByteMaps {
  std::array<char32_t, 256> to_unicode{};
  std::array<int16_t, 512> to_byte{};  // every mapped character is below U+0200
  ByteMaps() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_unicode[b] = printable ? char32_t(b) : next++;
      to_byte[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMaps& byte_maps() {
  static const ByteMaps maps;
  return maps;
}
}  // namespace

const std::array<char32_t, 256>& byte_to_unicode() { return byte_maps().to_unicode; }

int unicode_to_byte(char32_t cp) { return cp < 512 ? byte_maps().to_byte[cp] : -1; }

bool byte_level_decode(std::string_view s, std::string& out) {
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    if (!next_utf8(s, pos, cp)) return false;
    const int b = unicode_to_byte(cp);
    if (b < 0) return false;
    out += static_cast<char>(b);
  }
  return true;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  const auto& map = byte_to_unicode();
  for (unsigned char b : bytes) append_utf8(out, map[b]);
  return out;
}

bool is_unicode_whitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace icae::tok
