// Text cleaning and pre-tokenizing as CLIP's simple_tokenizer.py; see the header
// for what is exact and what is approximated.
#include "tokenizer/text_normalize.h"

#include <utf8proc.h>

#include <cstdlib>

#include <array>
#include <cstring>

namespace curaclip {

// ---------------------------------------------------------------- UTF-8 ----

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

uint32_t utf8_next(std::string_view s, size_t& i) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    const uint8_t b0 = byte(i);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    int len = 0;
    uint32_t cp = 0, min = 0;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        ++i;
        return 0xFFFD;
    }
    if (i + len > s.size()) {
        ++i;
        return 0xFFFD;
    }
    for (int k = 1; k < len; ++k) {
        const uint8_t b = byte(i + k);
        if ((b & 0xC0) != 0x80) {
            ++i;
            return 0xFFFD;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++i;
        return 0xFFFD;
    }
    i += len;
    return cp;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        const uint32_t cp = utf8_next(s, i);
        if (cp == 0xFFFD && !(i - start == 3 && s.substr(start, 3) == "\xEF\xBF\xBD"))
            utf8_append(out, 0xFFFD);
        else
            out.append(s.substr(start, i - start));
    }
    return out;
}

// -------------------------------------------------------- html.unescape ----

namespace {

// Python's html._invalid_charrefs for 0x80..0x9F (Windows-1252).
constexpr std::array<uint16_t, 32> kCp1252 = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

void append_charref(std::string& out, uint64_t num) {
    if (num == 0) return utf8_append(out, 0xFFFD);
    if (num == 0x0D) return out.push_back('\r');
    if (num >= 0x80 && num <= 0x9F) return utf8_append(out, kCp1252[num - 0x80]);
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return utf8_append(out, 0xFFFD);
    // Python drops these "invalid code points".
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
        num == 0x7F || (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return;
    utf8_append(out, static_cast<uint32_t>(num));
}

struct Entity {
    const char* name;
    const char* text;
};
// A few HTML5 entities: with ';', and the legacy ones Python also accepts without.
constexpr Entity kEntitiesSemi[] = {{"amp;", "&"},   {"AMP;", "&"},  {"lt;", "<"},
                                    {"LT;", "<"},    {"gt;", ">"},   {"GT;", ">"},
                                    {"quot;", "\""}, {"QUOT;", "\""}, {"apos;", "'"},
                                    {"nbsp;", "\xC2\xA0"}};
constexpr Entity kEntitiesLegacy[] = {{"amp", "&"}, {"AMP", "&"},   {"lt", "<"},
                                      {"LT", "<"},  {"gt", ">"},    {"GT", ">"},
                                      {"quot", "\""}, {"QUOT", "\""}, {"nbsp", "\xC2\xA0"}};

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int hex_value(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

// One pass of Python's html.unescape (limited entity table, see the header).
std::string html_unescape(std::string_view s) {
    if (s.find('&') == std::string_view::npos) return std::string(s);
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        if (s[i] != '&') {
            out.push_back(s[i++]);
            continue;
        }
        const size_t amp = i;
        size_t j = i + 1;
        if (j < s.size() && s[j] == '#') {
            ++j;
            const bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
            if (hex) ++j;
            const size_t digits = j;
            uint64_t num = 0;
            while (j < s.size() && (hex ? is_hex(s[j]) : (s[j] >= '0' && s[j] <= '9'))) {
                num = num * (hex ? 16 : 10) + static_cast<uint64_t>(hex ? hex_value(s[j]) : s[j] - '0');
                if (num > 0x110000) num = 0x110000;  // saturate: anything this big is invalid
                ++j;
            }
            if (j == digits) {  // "&#" or "&#x" without digits: literal
                out.push_back('&');
                i = amp + 1;
                continue;
            }
            if (j < s.size() && s[j] == ';') ++j;
            append_charref(out, num);
            i = j;
            continue;
        }
        // Named reference: [^\t\n\f <&#;]{1,32};?
        constexpr std::string_view kStop = "\t\n\f <&#;";
        while (j < s.size() && j - (amp + 1) < 32 && kStop.find(s[j]) == std::string_view::npos) ++j;
        if (j == amp + 1) {
            out.push_back('&');
            i = amp + 1;
            continue;
        }
        if (j < s.size() && s[j] == ';') ++j;
        const std::string_view name = s.substr(amp + 1, j - (amp + 1));
        bool done = false;
        for (const Entity& e : kEntitiesSemi)
            if (name == e.name) {
                out += e.text;
                done = true;
                break;
            }
        if (!done) {
            // The whole name, or its longest prefix, among the legacy names (Python's rule).
            size_t best = 0;
            const char* text = nullptr;
            for (const Entity& e : kEntitiesLegacy) {
                const size_t n = std::strlen(e.name);
                if (n <= name.size() && n > best && name.substr(0, n) == e.name) best = n, text = e.text;
            }
            if (text) {
                out += text;
                out.append(name.substr(best));
            } else {
                out.push_back('&');
                out.append(name);
            }
        }
        i = j;
    }
    return out;
}

// ------------------------------------------------------- character tables ----

bool is_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

// Code points ftfy's remove_control_chars deletes (the common ones).
bool is_removed_control(uint32_t cp) {
    return cp <= 0x08 || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F || cp == 0xFEFF ||
           (cp >= 0x206A && cp <= 0x206F) || (cp >= 0xFFF9 && cp <= 0xFFFC);
}

struct Range {
    uint32_t lo, hi;
};

bool in_ranges(uint32_t cp, const Range* r, size_t n) {
    for (size_t k = 0; k < n; ++k)
        if (cp >= r[k].lo && cp <= r[k].hi) return true;
    return false;
}

// \p{N} beyond ASCII: Latin-1 digits/fractions, decimal digits of common scripts,
// super/subscripts, number forms, enclosed and dingbat numbers, CJK numerals.
constexpr Range kNumbers[] = {
    {0x00B2, 0x00B3}, {0x00B9, 0x00B9}, {0x00BC, 0x00BE}, {0x0660, 0x0669}, {0x06F0, 0x06F9},
    {0x07C0, 0x07C9}, {0x0966, 0x096F}, {0x09E6, 0x09EF}, {0x0A66, 0x0A6F}, {0x0AE6, 0x0AEF},
    {0x0B66, 0x0B6F}, {0x0BE6, 0x0BF2}, {0x0C66, 0x0C6F}, {0x0CE6, 0x0CEF}, {0x0D66, 0x0D6F},
    {0x0E50, 0x0E59}, {0x0ED0, 0x0ED9}, {0x0F20, 0x0F33}, {0x1040, 0x1049}, {0x17E0, 0x17E9},
    {0x1810, 0x1819}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182},
    {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x3007, 0x3007},
    {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF},
    {0xFF10, 0xFF19}, {0x1D7CE, 0x1D7FF}, {0x1F100, 0x1F10C}};

// Neither letter, number nor space beyond ASCII: punctuation, symbols, combining
// marks, format characters, emoji, private use.
constexpr Range kOthers[] = {
    {0x0080, 0x009F}, {0x00A1, 0x00A9}, {0x00AB, 0x00B1}, {0x00B4, 0x00B4}, {0x00B6, 0x00B8},
    {0x00BB, 0x00BB}, {0x00BF, 0x00BF}, {0x00D7, 0x00D7}, {0x00F7, 0x00F7}, {0x02C2, 0x02C5},
    {0x02D2, 0x02DF}, {0x02E5, 0x02EB}, {0x02ED, 0x02ED}, {0x02EF, 0x036F}, {0x0375, 0x0375},
    {0x037E, 0x037E}, {0x0384, 0x0385}, {0x0387, 0x0387}, {0x0483, 0x0489}, {0x055A, 0x055F},
    {0x0589, 0x058A}, {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6},
    {0x05F3, 0x05F4}, {0x060C, 0x060D}, {0x061B, 0x061F}, {0x064B, 0x065F}, {0x066A, 0x066D},
    {0x06D4, 0x06D4}, {0x0964, 0x0965}, {0x0E3F, 0x0E3F}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
    {0x200B, 0x2027}, {0x202A, 0x202E}, {0x2030, 0x205E}, {0x2060, 0x206F}, {0x207A, 0x207E},
    {0x208A, 0x208E}, {0x20A0, 0x20FF}, {0x2100, 0x2101}, {0x2103, 0x2106}, {0x2108, 0x2109},
    {0x2114, 0x2114}, {0x2116, 0x2118}, {0x211E, 0x2123}, {0x2125, 0x2125}, {0x2127, 0x2127},
    {0x2129, 0x2129}, {0x212E, 0x212E}, {0x213A, 0x213B}, {0x2140, 0x2144}, {0x214A, 0x214D},
    {0x214F, 0x214F}, {0x218A, 0x218B}, {0x2190, 0x245F}, {0x249C, 0x24E9}, {0x2500, 0x2775},
    {0x2794, 0x2BFF}, {0x2CE5, 0x2CEA}, {0x2CF9, 0x2CFF}, {0x2E00, 0x2E7F}, {0x2E80, 0x2FFF},
    {0x3001, 0x3004}, {0x3008, 0x3020}, {0x302A, 0x3030}, {0x3036, 0x3037}, {0x303D, 0x303F},
    {0x3099, 0x309C}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0x3190, 0x3191}, {0x3196, 0x319F},
    {0x31C0, 0x31E3}, {0x3200, 0x321E}, {0x322A, 0x3247}, {0x3250, 0x3250}, {0x3260, 0x327F},
    {0x328A, 0x32B0}, {0x32C0, 0x33FF}, {0x4DC0, 0x4DFF}, {0xA490, 0xA4C6}, {0xA700, 0xA716},
    {0xA720, 0xA721}, {0xA789, 0xA78A}, {0xD800, 0xF8FF}, {0xFB29, 0xFB29}, {0xFD3E, 0xFD3F},
    {0xFE00, 0xFE6F}, {0xFEFF, 0xFEFF}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40},
    {0xFF5B, 0xFF65}, {0xFFE0, 0xFFFF}, {0x10100, 0x1013F}, {0x1D000, 0x1D24F}, {0x1D400, 0x1D7CD},
    {0x1F000, 0x1F0FF}, {0x1F10D, 0x1FBFF}, {0xE0000, 0xE0FFF}, {0xF0000, 0x10FFFF}};

// Python str.lower() for the common alphabets (one code point to one).
uint32_t to_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp < 0xC0) return cp;
    if (cp <= 0xDE) return cp == 0xD7 ? cp : cp + 32;  // Latin-1
    if (cp < 0x100) return cp;
    if (cp <= 0x17F) {  // Latin Extended-A
        if (cp == 0x130 || cp == 0x131 || cp == 0x138 || cp == 0x149 || cp == 0x17F) return cp;
        if (cp == 0x178) return 0xFF;
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) return (cp & 1) ? cp + 1 : cp;
        return (cp & 1) ? cp : cp + 1;
    }
    if (cp >= 0x386 && cp <= 0x3AB) {  // Greek
        if (cp == 0x386) return 0x3AC;
        if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
        if (cp == 0x38C) return 0x3CC;
        if (cp == 0x38E || cp == 0x38F) return cp + 63;
        if (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2) return cp + 32;
        return cp;
    }
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;  // Cyrillic
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x460 && cp <= 0x4FF) {
        if ((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x4FF))
            return (cp & 1) ? cp : cp + 1;
        if (cp == 0x4C0) return 0x4CF;
        if (cp >= 0x4C1 && cp <= 0x4CE) return (cp & 1) ? cp + 1 : cp;
        return cp;
    }
    if ((cp >= 0x1E00 && cp <= 0x1E95) || (cp >= 0x1EA0 && cp <= 0x1EFF))  // Latin Ext. Additional
        return (cp & 1) ? cp : cp + 1;
    if (cp >= 0x2160 && cp <= 0x216F) return cp + 16;  // Roman numerals
    if (cp >= 0x24B6 && cp <= 0x24CF) return cp + 26;  // circled letters
    if (cp >= 0xFF21 && cp <= 0xFF3A) return cp + 32;
    return cp;
}

bool starts_with(std::string_view s, size_t i, std::string_view what) {
    return s.size() - i >= what.size() && s.substr(i, what.size()) == what;
}

constexpr std::string_view kSot = "<|startoftext|>";
constexpr std::string_view kEot = "<|endoftext|>";

// ------------------------------------------------------------ ftfy-lite ----

// ftfy's unescape_html: only "&#?[0-9A-Za-z]{1,24};", known names (with their
// all-caps forms) and whole numeric references.
std::string ftfy_unescape(std::string_view s) {
    if (s.find('&') == std::string_view::npos) return std::string(s);
    static constexpr Entity kFtfyExtra[] = {{"APOS;", "'"}, {"NBSP;", "\xC2\xA0"}};
    const auto alnum = [](char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); };
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        if (s[i] != '&') {
            out.push_back(s[i++]);
            continue;
        }
        size_t j = i + 1;
        const bool numeric = j < s.size() && s[j] == '#';
        if (numeric) ++j;
        const size_t name_start = j;
        while (j < s.size() && j - name_start < 25 && alnum(s[j])) ++j;
        const size_t len = j - name_start;
        if (len < 1 || len > 24 || j >= s.size() || s[j] != ';') {
            out.push_back(s[i++]);
            continue;
        }
        const std::string_view name = s.substr(name_start, len + 1);  // with ';'
        bool done = false;
        if (!numeric) {
            for (const Entity& e : kEntitiesSemi)
                if (name == e.name) out += e.text, done = true;
            for (const Entity& e : kFtfyExtra)
                if (!done && name == e.name) out += e.text, done = true;
        } else {
            const bool hex = name[0] == 'x' || name[0] == 'X';
            const std::string_view digits = name.substr(hex ? 1 : 0, name.size() - (hex ? 2 : 1));
            bool ok = !digits.empty();
            uint64_t num = 0;
            for (const char c : digits) {
                if (!(hex ? is_hex(c) : (c >= '0' && c <= '9'))) ok = false;
                if (!ok) break;
                num = std::min<uint64_t>(num * (hex ? 16 : 10) + static_cast<uint64_t>(hex ? hex_value(c) : c - '0'), 0x110000);
            }
            if (ok) append_charref(out, num), done = true;
        }
        if (!done) out.append(s.substr(i, j + 1 - i));
        i = j + 1;
    }
    return out;
}

// Latin ligatures ftfy's fix_latin_ligatures breaks up (UTF-8 replacements).
const char* ligature(uint32_t cp) {
    switch (cp) {
        case 0x132: return "IJ";
        case 0x133: return "ij";
        case 0x149: return "\xCA\xBCn";
        case 0x1C4: return "D\xC5\xBD";
        case 0x1C5: return "D\xC5\xBE";
        case 0x1C6: return "d\xC5\xBE";
        case 0x1C7: return "LJ";
        case 0x1C8: return "Lj";
        case 0x1C9: return "lj";
        case 0x1CA: return "NJ";
        case 0x1CB: return "Nj";
        case 0x1CC: return "nj";
        case 0x1F1: return "DZ";
        case 0x1F2: return "Dz";
        case 0x1F3: return "dz";
        case 0xFB00: return "ff";
        case 0xFB01: return "fi";
        case 0xFB02: return "fl";
        case 0xFB03: return "ffi";
        case 0xFB04: return "ffl";
        case 0xFB05: return "\xC5\xBFt";
        case 0xFB06: return "st";
        default: return nullptr;
    }
}

// One round of ftfy's character fixers, in its order: fix_c1_controls,
// fix_latin_ligatures, fix_character_width (full width -> ASCII only),
// uncurl_quotes, fix_line_breaks, remove_terminal_escapes, remove_control_chars.
std::string ftfy_char_fixes(std::string_view s) {
    std::vector<uint32_t> cps;
    cps.reserve(s.size());
    const auto push = [&cps](uint32_t cp) {
        if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0;
        else if (cp == 0x3000) cp = ' ';
        if (cp == 0x02BC || (cp >= 0x2018 && cp <= 0x201B)) cp = '\'';
        else if (cp >= 0x201C && cp <= 0x201F) cp = '"';
        if (cp == 0x2028 || cp == 0x2029) cp = '\n';
        cps.push_back(cp);
    };
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        if (cp >= 0x80 && cp <= 0x9F && cp != 0x81 && cp != 0x8D && cp != 0x8F && cp != 0x90 && cp != 0x9D)
            cp = kCp1252[cp - 0x80];
        if (const char* lig = ligature(cp)) {
            const std::string_view l(lig);
            for (size_t k = 0; k < l.size();) push(utf8_next(l, k));
            continue;
        }
        if (cp == '\r') {  // \r\n and \r -> \n
            if (i < s.size() && s[i] == '\n') continue;
            cp = '\n';
        }
        push(cp);
    }
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < cps.size(); ++i) {
        if (cps[i] == 0x1B && i + 1 < cps.size() && cps[i + 1] == '[') {  // ESC [ [0-9;]* [A-Za-z]
            size_t k = i + 2;
            while (k < cps.size() && ((cps[k] >= '0' && cps[k] <= '9') || cps[k] == ';')) ++k;
            if (k < cps.size() && cps[k] < 0x80 && ((cps[k] | 0x20) >= 'a' && (cps[k] | 0x20) <= 'z')) {
                i = k;
                continue;
            }
        }
        if (is_removed_control(cps[i])) continue;
        utf8_append(out, cps[i]);
    }
    return out;
}

// ftfy.fix_text, for what ordinary captions need: line by line, ftfy's HTML
// unescaping (off from the first line holding a '<' on) and character fixers,
// repeated until nothing changes. No mojibake repair, no NFC.
std::string ftfy_lite(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool unescape = true;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        end = end == std::string_view::npos ? text.size() : end + 1;
        std::string seg(text.substr(pos, end - pos));
        pos = end;
        if (unescape && seg.find('<') != std::string::npos) unescape = false;
        for (int round = 0; round < 16; ++round) {
            std::string fixed = ftfy_char_fixes(unescape ? ftfy_unescape(seg) : seg);
            if (fixed == seg) break;
            seg.swap(fixed);
        }
        out += seg;
    }
    return out;
}

}  // namespace

CharClass clip_char_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::Letter;
        if (cp >= '0' && cp <= '9') return CharClass::Number;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::Space;
        return CharClass::Other;
    }
    if (is_space(cp)) return CharClass::Space;
    if (in_ranges(cp, kNumbers, std::size(kNumbers))) return CharClass::Number;
    if (in_ranges(cp, kOthers, std::size(kOthers))) return CharClass::Other;
    return CharClass::Letter;
}

std::string unicode_nfc(std::string_view text) {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), utf8proc_ssize_t(text.size()), &out,
                     utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) {  // invalid UTF-8 (callers sanitize first): leave the text as it is
        std::free(out);
        return std::string(text);
    }
    std::string r(reinterpret_cast<const char*>(out), size_t(n));
    std::free(out);
    return r;
}

std::string clip_clean_text(std::string_view text) {
    // ftfy.fix_text (whose last step is NFC normalization), then html.unescape
    // twice, as CLIP's basic_clean.
    const std::string s = html_unescape(html_unescape(unicode_nfc(ftfy_lite(utf8_sanitize(text)))));

    // whitespace_clean (collapse runs to one space, strip), then lower().
    std::string out;
    out.reserve(s.size());
    bool pending_space = false;  // a whitespace run seen after some output
    for (size_t i = 0; i < s.size();) {
        const uint32_t cp = utf8_next(s, i);
        if (is_space(cp)) {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) {
            out.push_back(' ');
            pending_space = false;
        }
        if (cp == 0x130) {  // 'İ'.lower() == 'i' + U+0307
            out.push_back('i');
            utf8_append(out, 0x307);
        } else {
            utf8_append(out, to_lower(cp));
        }
    }
    return out;
}

std::vector<std::string_view> clip_pretokenize(std::string_view s) {
    std::vector<std::string_view> pieces;
    size_t i = 0;
    while (i < s.size()) {
        const size_t start = i;
        if (s[i] == '<') {
            if (starts_with(s, i, kSot) || starts_with(s, i, kEot)) {
                const size_t n = starts_with(s, i, kSot) ? kSot.size() : kEot.size();
                pieces.push_back(s.substr(i, n));
                i += n;
                continue;
            }
        } else if (s[i] == '\'' && i + 1 < s.size()) {
            // 's 't 're 've 'm 'll 'd (IGNORECASE)
            const auto lc = [&](size_t k) { return k < s.size() ? static_cast<char>(s[k] | 0x20) : '\0'; };
            const char c1 = lc(i + 1), c2 = lc(i + 2);
            size_t n = 0;
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') n = 2;
            else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) n = 3;
            if (n) {
                pieces.push_back(s.substr(i, n));
                i += n;
                continue;
            }
        }
        size_t next = i;
        const CharClass cls = clip_char_class(utf8_next(s, next));
        if (cls == CharClass::Space) {
            i = next;
            continue;
        }
        if (cls == CharClass::Number) {
            pieces.push_back(s.substr(start, next - start));
            i = next;
            continue;
        }
        // Letter run, or a run of "other" (neither space, letter nor number).
        i = next;
        while (i < s.size()) {
            size_t k = i;
            if (clip_char_class(utf8_next(s, k)) != cls) break;
            i = k;
        }
        pieces.push_back(s.substr(start, i - start));
    }
    return pieces;
}

}  // namespace curaclip
