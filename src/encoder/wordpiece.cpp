// BERT uncased WordPiece (see wordpiece.h for the exact steps and their source).
#include "encoder/wordpiece.h"

#include <utf8proc.h>

#include <cstdlib>
#include <fstream>

#include "core/check.h"
#include "tokenizer/text_normalize.h"

namespace curaclip::encoder {

namespace {

// Unicode White_Space (Rust's char::is_whitespace, which tokenizers uses).
bool is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
// tokenizers' is_control: \t \n \r are not; otherwise any category C* (Cc Cf Cs Co Cn).
bool is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    const utf8proc_category_t cat = utf8proc_category(utf8proc_int32_t(c));
    return cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO;
}
// tokenizers' is_chinese_char (the CJK Unified Ideographs blocks and their extensions).
bool is_chinese_char(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}
// tokenizers' is_bert_punc: ASCII punctuation or a Unicode P* category.
bool is_punctuation(uint32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
    if (c < 128) return false;
    const utf8proc_category_t cat = utf8proc_category(utf8proc_int32_t(c));
    return cat == UTF8PROC_CATEGORY_PC || cat == UTF8PROC_CATEGORY_PD || cat == UTF8PROC_CATEGORY_PS ||
           cat == UTF8PROC_CATEGORY_PE || cat == UTF8PROC_CATEGORY_PI || cat == UTF8PROC_CATEGORY_PF ||
           cat == UTF8PROC_CATEGORY_PO;
}

std::string nfd(const std::string& s) {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            utf8proc_ssize_t(s.size()), &out, UTF8PROC_DECOMPOSE);
    if (n < 0) return s;  // cannot happen for the valid UTF-8 built by the caller
    std::string r(reinterpret_cast<const char*>(out), size_t(n));
    std::free(out);
    return r;
}

}  // namespace

std::string bert_normalize(std::string_view text) {
    // 1. clean text, 2. spaces around CJK ideographs
    std::string a;
    a.reserve(text.size() + 8);
    for (size_t i = 0; i < text.size();) {
        const uint32_t c = utf8_next(text, i);
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_whitespace(c)) {
            a += ' ';
        } else if (is_chinese_char(c)) {
            a += ' ';
            utf8_append(a, c);
            a += ' ';
        } else {
            utf8_append(a, c);
        }
    }
    // 3. NFD, nonspacing marks removed; 4. lower case
    const std::string d = nfd(a);
    std::string r;
    r.reserve(d.size());
    for (size_t i = 0; i < d.size();) {
        const uint32_t c = utf8_next(d, i);
        if (utf8proc_category(utf8proc_int32_t(c)) == UTF8PROC_CATEGORY_MN) continue;
        utf8_append(r, uint32_t(utf8proc_tolower(utf8proc_int32_t(c))));
    }
    return r;
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, int max_input_chars_per_word)
    : vocab_(std::move(vocab)), max_chars_(max_input_chars_per_word) {
    CC_CHECK(!vocab_.empty(), "WordPiece: empty vocabulary");
    ids_.reserve(vocab_.size());
    // The first occurrence of a duplicated token wins, as tokenizers' vocab loading.
    for (size_t i = 0; i < vocab_.size(); ++i) ids_.emplace(vocab_[i], int32_t(i));
    auto special = [&](const char* t) {
        const int32_t v = id(t);
        CC_CHECK(v >= 0, "WordPiece: the vocabulary has no ", t, " token (a BERT uncased vocab.txt holds [PAD], "
                 "[UNK], [CLS], [SEP])");
        return v;
    };
    cls_ = special("[CLS]");
    sep_ = special("[SEP]");
    pad_ = special("[PAD]");
    unk_ = special("[UNK]");
}

WordPieceTokenizer WordPieceTokenizer::from_file(const std::string& vocab_txt) {
    std::ifstream f(vocab_txt, std::ios::binary);
    CC_CHECK(f.good(), "WordPiece vocabulary ", vocab_txt, " cannot be opened");
    std::vector<std::string> v;
    std::string line;
    while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        v.push_back(line);
    }
    CC_CHECK(!v.empty(), "WordPiece vocabulary ", vocab_txt, " is empty");
    try {
        return WordPieceTokenizer(std::move(v));
    } catch (const Error& e) {
        CC_FAIL(vocab_txt, ": ", e.what());
    }
}

int32_t WordPieceTokenizer::id(const std::string& token) const {
    const auto it = ids_.find(token);
    return it == ids_.end() ? -1 : it->second;
}

std::vector<std::string> WordPieceTokenizer::basic_tokenize(std::string_view text) const {
    const std::string s = bert_normalize(text);
    std::vector<std::string> words;
    std::string cur;
    for (size_t i = 0; i < s.size();) {
        const size_t at = i;
        const uint32_t c = utf8_next(s, i);
        if (is_whitespace(c)) {
            if (!cur.empty()) words.push_back(std::move(cur));
            cur.clear();
        } else if (is_punctuation(c)) {
            if (!cur.empty()) words.push_back(std::move(cur));
            cur.clear();
            words.emplace_back(s.substr(at, i - at));
        } else {
            cur.append(s, at, i - at);
        }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
    return words;
}

void WordPieceTokenizer::wordpiece(std::string_view word, std::vector<int32_t>& out) const {
    // Code point boundaries of the word: pieces are cut at them only.
    std::vector<size_t> bounds{0};
    for (size_t i = 0; i < word.size();) {
        utf8_next(word, i);
        bounds.push_back(i);
    }
    const size_t nchars = bounds.size() - 1;
    if (nchars == 0) return;
    if (int64_t(nchars) > int64_t(max_chars_)) {
        out.push_back(unk_);
        return;
    }
    const size_t mark = out.size();
    std::string piece;
    for (size_t start = 0; start < nchars;) {
        int32_t found = -1;
        size_t end = nchars;
        for (; end > start; --end) {
            piece.assign(start > 0 ? "##" : "");
            piece.append(word.substr(bounds[start], bounds[end] - bounds[start]));
            found = id(piece);
            if (found >= 0) break;
        }
        if (found < 0) {
            out.resize(mark);
            out.push_back(unk_);
            return;
        }
        out.push_back(found);
        start = end;
    }
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text, int max_length) const {
    CC_CHECK(max_length >= 2, "WordPiece: max_length ", max_length, " leaves no room for [CLS] and [SEP]");
    std::vector<int32_t> ids{cls_};
    const size_t limit = size_t(max_length - 1);  // [CLS] + up to max_length - 2 pieces
    for (const std::string& w : basic_tokenize(text)) {
        wordpiece(w, ids);
        if (ids.size() >= limit) break;
    }
    if (ids.size() > limit) ids.resize(limit);
    ids.push_back(sep_);
    return ids;
}

}  // namespace curaclip::encoder
