// Caption checks and normalization for `curaclip prep` (docs/data.md §What happens to each sample): what every
// caption goes through before it is stored in /captions and BPE-tokenized.
//
//   1. the bytes must be valid UTF-8 (else RejectReason::invalid_utf8: a caption
//      in Latin-1 or a cut multi-byte sequence would become U+FFFD soup);
//   2. Unicode NFC normalization (utf8proc), as ftfy.fix_text does before OpenAI
//      CLIP's tokenizer: "e" + U+0301 and "é" give the same tokens;
//   3. NUL bytes become spaces (HDF5 variable-length strings end at NUL), and
//      leading and trailing white space is removed;
//   4. nothing left -> RejectReason::empty_caption.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "prep/source.h"

namespace curaclip::prep {

struct CaptionResult {
    std::optional<RejectReason> reject;
    std::string text;    // the normalized caption (when not rejected)
    std::string detail;  // e.g. "invalid UTF-8 at byte 17"
};

CaptionResult normalize_caption(std::string_view raw);

}  // namespace curaclip::prep
