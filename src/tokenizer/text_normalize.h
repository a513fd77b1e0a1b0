// Text cleaning and pre-tokenizing, as OpenAI CLIP's simple_tokenizer.py does it.
//
// CLIP runs every caption through
//     ftfy.fix_text -> html.unescape (twice) -> strip -> collapse whitespace -> lower()
// and then splits it with the regex
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (IGNORECASE). Everything here is written by hand, without a regex or Unicode
// library, and is exact for ASCII text (the CLIP reference test checks that).
//
// Beyond ASCII it is an approximation, good for most text:
//  * ftfy: only the parts that matter for ordinary captions: removal of control
//    characters and of U+FEFF, curly quotes -> ASCII quotes, full-width forms ->
//    ASCII, Latin ligatures (U+FB00..U+FB06) -> letters. No mojibake repair, no NFC.
//  * html.unescape: &amp; &lt; &gt; &quot; &apos; &nbsp; (the first four also
//    without ';', as Python does) and numeric &#N; / &#xN; references.
//  * lower(): ASCII, Latin-1, Latin Extended-A, Latin Extended Additional, Greek
//    and Cyrillic (no final-sigma rule).
//  * \p{L} / \p{N} / \s: exact for ASCII and Latin-1; for other code points a
//    table of the common punctuation, symbol, digit, combining-mark, emoji and
//    space blocks; every other non-ASCII code point counts as a letter. That is
//    right for Latin, Greek, Cyrillic, CJK, Hangul, Hebrew, ...; scripts whose
//    words carry combining marks outside the tabled blocks (Devanagari vowel
//    signs, Arabic harakat) may split differently from CLIP.
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

// UTF-8 helpers.
void utf8_append(std::string& out, uint32_t cp);
// Decodes the code point at s[i], advancing i; invalid sequences give U+FFFD
// and advance by one byte.
uint32_t utf8_next(std::string_view s, size_t& i);
// Replaces invalid UTF-8 sequences with U+FFFD.
std::string utf8_sanitize(std::string_view s);

}  // namespace curaclip
