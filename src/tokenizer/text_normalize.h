// Text cleaning and pre-tokenizing, as OpenAI CLIP's simple_tokenizer.py does it.
//
// CLIP runs every caption through
//     ftfy.fix_text -> html.unescape (twice) -> strip -> collapse whitespace -> lower()
// and then splits it with the regex
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (IGNORECASE). Everything here is written by hand, without a regex or Unicode
// library, and is exact for plain ASCII text, rare HTML5 entity names aside
// (the CLIP reference test checks that).
//
// The ASCII part was also checked against CLIP on 100k random strings mixing
// punctuation, digits, contractions, entities and control characters: the only
// differences come from HTML5 entity names outside the table below.
//
// What is implemented, and where it stops:
//  * ftfy.fix_text, line by line and repeated until nothing changes, as ftfy
//    does: its HTML unescaping (only "&...;" forms; off from the first line
//    holding a '<' on), C1 controls -> Windows-1252, Latin ligatures, full-width
//    ASCII and U+3000 -> ASCII, curly quotes -> ASCII quotes, line breaks,
//    ANSI escapes and control characters removed, then NFC normalization
//    (utf8proc), as ftfy's default normalization="NFC". Not done: mojibake
//    repair (fix_encoding), half-width katakana/hangul.
//  * html.unescape (twice, after ftfy), with Python's rules (numeric references,
//    names with and without ';', longest legacy prefix) but only the entity
//    names amp, lt, gt, quot, apos, nbsp (and their all-caps forms); other
//    HTML5 names (&eth; &Pi; ...) stay as they are.
//  * lower(): ASCII, Latin-1, Latin Extended-A, Latin Extended Additional,
//    Greek, Cyrillic, Roman numerals, circled and full-width letters (no
//    final-sigma rule, no Latin Extended-B).
//  * \p{L} / \p{N} / \s: exact for ASCII and Latin-1; for other code points a
//    table of the common punctuation, symbol, digit, combining-mark, emoji and
//    space blocks; EVERY OTHER NON-ASCII CODE POINT COUNTS AS A LETTER. That is
//    right for Latin, Greek, Cyrillic, CJK, Hangul, Hebrew, ...; scripts whose
//    words carry combining marks outside the tabled blocks (Devanagari vowel
//    signs, Arabic harakat) and unassigned code points may split differently.
//    On random mixes of common non-ASCII characters it agrees with CLIP run
//    without ftfy's mojibake repair.
//  * Invalid UTF-8 becomes U+FFFD (as a Python bytes.decode(errors="replace")).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace curaclip {

// ftfy-lite + html unescape + whitespace cleanup + lower-casing. The result is
// valid UTF-8 with single spaces between words and none at either end.
std::string clip_clean_text(std::string_view text);

// CLIP's pre-tokenizing regex on already cleaned text: the pieces in order, as
// views into `cleaned`. The special-token literals come out as pieces of their own.
std::vector<std::string_view> clip_pretokenize(std::string_view cleaned);

// Character class used by the pre-tokenizer (exposed for tests).
enum class CharClass : uint8_t { Letter, Number, Space, Other };
CharClass clip_char_class(uint32_t cp);

// Unicode NFC normalization (utf8proc); text must be valid UTF-8 (returned
// unchanged otherwise).
std::string unicode_nfc(std::string_view text);

// UTF-8 helpers.
void utf8_append(std::string& out, uint32_t cp);
// Decodes the code point at s[i], advancing i; invalid sequences give U+FFFD
// and advance by one byte.
uint32_t utf8_next(std::string_view s, size_t& i);
// Replaces invalid UTF-8 sequences with U+FFFD.
std::string utf8_sanitize(std::string_view s);

}  // namespace curaclip
