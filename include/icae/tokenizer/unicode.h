// UTF-8 helpers for the tokenizer: decoding, validation, repair, and the GPT-2 byte <-> char map.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace icae::tok {

// Decodes the UTF-8 character starting at s[pos]; on success stores it in cp, advances pos and
// returns true. Returns false (pos unchanged) on an invalid or truncated sequence, an overlong
// form, a surrogate or a value above U+10FFFF.
bool next_utf8(std::string_view s, size_t& pos, char32_t& cp);

// Byte offset of the first invalid UTF-8 sequence in s, or std::string_view::npos if s is valid.
size_t find_invalid_utf8(std::string_view s);

// s with every invalid sequence replaced by U+FFFD, one per maximal invalid subpart
// (the policy of Python's bytes.decode(errors="replace") and Rust's from_utf8_lossy).
std::string sanitize_utf8(std::string_view s);

// Appends the UTF-8 encoding of cp (assumed a valid scalar value).
void append_utf8(std::string& out, char32_t cp);

// Length of the UTF-8 sequence that starts with this lead byte (1 for invalid leads).
inline size_t utf8_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? (lead < 0xC0 ? 1 : 2) : lead < 0xF0 ? 3 : lead < 0xF8 ? 4 : 1;
}

// GPT-2's reversible map from bytes to printable characters ("Ġ" for ' ', "Ċ" for '\n', ...).
const std::array<char32_t, 256>& byte_to_unicode();
// The inverse of byte_to_unicode(): the byte, or -1 if cp is not one of the 256 characters.
int unicode_to_byte(char32_t cp);

// A string in the byte-level alphabet -> raw bytes. Returns false if a character is outside it.
bool byte_level_decode(std::string_view s, std::string& out);
// Raw bytes -> the byte-level alphabet.
std::string byte_level_encode(std::string_view bytes);

// Whitespace as Rust's char::is_whitespace (the Unicode White_Space property).
bool is_unicode_whitespace(char32_t cp);

}  // namespace icae::tok
