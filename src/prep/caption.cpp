#include "prep/caption.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace curaclip::prep {

CaptionResult normalize_caption(std::string_view raw) {
    CaptionResult r;
    // Validate first: utf8proc_NFC would silently stop at the first bad byte.
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(raw.data());
    utf8proc_ssize_t i = 0;
    const auto n = utf8proc_ssize_t(raw.size());
    while (i < n) {
        utf8proc_int32_t cp = 0;
        const utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
        if (len <= 0 || cp < 0) {
            r.reject = RejectReason::invalid_utf8;
            r.detail = "invalid UTF-8 at byte " + std::to_string(i);
            return r;
        }
        i += len;
    }
    std::string s(raw);
    for (char& c : s)
        if (c == '\0') c = ' ';
    // utf8proc_NFC needs a NUL-terminated string; s has no NULs left.
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> nfc(
        utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str())), &std::free);
    if (!nfc) {
        r.reject = RejectReason::invalid_utf8;
        r.detail = "cannot be NFC-normalized";
        return r;
    }
    std::string_view t(reinterpret_cast<const char*>(nfc.get()));
    const char* ws = " \t\n\r\f\v";
    const size_t b = t.find_first_not_of(ws);
    if (b == std::string_view::npos) {
        r.reject = RejectReason::empty_caption;
        r.detail = raw.empty() ? "empty" : "only white space";
        return r;
    }
    const size_t e = t.find_last_not_of(ws);
    r.text = std::string(t.substr(b, e - b + 1));
    return r;
}

}  // namespace curaclip::prep
