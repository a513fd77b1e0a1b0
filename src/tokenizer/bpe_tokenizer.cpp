// Byte-level BPE tokenizer (CLIP's simple_tokenizer.py); see the header.
#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <fstream>
#include <cstring>
#include <cerrno>
#include <iterator>
#include <mutex>
#include <sstream>

#include <zlib.h>

#include "core/check.h"
#include "tokenizer/text_normalize.h"

namespace curaclip {

// ------------------------------------------------------ bytes_to_unicode ----

namespace {

struct ByteTables {
    std::array<uint32_t, 256> to_unicode{};
    std::array<uint8_t, 256> order{};
    ByteTables() {
        int k = 0;
        std::array<bool, 256> printable{};
        for (int b = 0; b < 256; ++b)
            printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        for (int b = 0; b < 256; ++b)
            if (printable[b]) {
                to_unicode[b] = static_cast<uint32_t>(b);
                order[k++] = static_cast<uint8_t>(b);
            }
        uint32_t n = 0;
        for (int b = 0; b < 256; ++b)
            if (!printable[b]) {
                to_unicode[b] = 256 + n++;
                order[k++] = static_cast<uint8_t>(b);
            }
    }
};

const ByteTables& byte_tables() {
    static const ByteTables t;
    return t;
}

constexpr std::string_view kEow = "</w>";
constexpr std::string_view kSotText = "<|startoftext|>";
constexpr std::string_view kEotText = "<|endoftext|>";

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Raw bytes of a symbol in bytes_to_unicode form; false if some code point
// stands for no byte.
bool symbol_bytes(std::string_view sym, std::string& out) {
    out.clear();
    for (size_t i = 0; i < sym.size();) {
        const int b = clip_unicode_to_byte(utf8_next(sym, i));
        if (b < 0) return false;
        out.push_back(static_cast<char>(b));
    }
    return true;
}

std::string quoted_line(std::string_view line) {
    std::string s(line.substr(0, 80));
    if (line.size() > 80) s += "...";
    return "'" + s + "'";
}

}  // namespace

uint32_t clip_byte_to_unicode(uint8_t b) { return byte_tables().to_unicode[b]; }

int clip_unicode_to_byte(uint32_t cp) {
    if (cp < 256) {
        const bool printable = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
        return printable ? static_cast<int>(cp) : -1;
    }
    if (cp < 256 + 68) {  // 68 bytes are not printable
        const auto& t = byte_tables();
        return t.order[256 - 68 + (cp - 256)];
    }
    return -1;
}

const std::array<uint8_t, 256>& clip_byte_order() { return byte_tables().order; }

// ---------------------------------------------------------------- cache ----

struct BpeTokenizer::Cache {
    static constexpr size_t kMaxEntries = size_t{1} << 18;
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> map;
};

// --------------------------------------------------------- construction ----

BpeTokenizer::BpeTokenizer() { build(nullptr, "merges"); }

BpeTokenizer::BpeTokenizer(std::vector<Merge> merges, const std::string& source)
    : merges_(std::move(merges)) {
    build(nullptr, source);
}

void BpeTokenizer::build(const std::vector<int>* line_numbers, const std::string& source) {
    const auto where = [&](size_t m) {
        std::ostringstream os;
        os << source;
        if (line_numbers) os << ":" << (*line_numbers)[m];
        else os << " (merge " << m << ")";
        return os.str();
    };
    CC_CHECK(merges_.size() <= static_cast<size_t>(INT32_MAX - kNumByteSymbols - 2), source,
             ": too many merges (", merges_.size(), ")");

    const auto& order = clip_byte_order();
    vocab_.clear();
    vocab_.reserve(kNumByteSymbols + merges_.size() + 2);
    for (int k = 0; k < 256; ++k) {
        std::string s;
        utf8_append(s, clip_byte_to_unicode(order[k]));
        vocab_.push_back(std::move(s));
    }
    for (int k = 0; k < 256; ++k) vocab_.push_back(vocab_[k] + std::string(kEow));

    // Symbol -> id; when two merges give the same symbol the later id wins, as
    // in CLIP's dict(zip(vocab, range(len(vocab)))).
    std::unordered_map<std::string, int32_t> encoder;
    encoder.reserve(vocab_.capacity() * 2);
    for (int32_t id = 0; id < kNumByteSymbols; ++id) encoder[vocab_[id]] = id;
    for (size_t m = 0; m < merges_.size(); ++m) {
        const auto& [a, b] = merges_[m];
        for (const std::string* part : {&a, &b}) {
            CC_REQUIRE(!part->empty() && part->find(' ') == std::string::npos, where(m),
                     ": malformed merge '", a, " ", b, "'");
            if (!encoder.count(*part))
                CC_USER_FAIL(where(m), ": merge '", a, " ", b, "' uses the unknown symbol '", *part,
                        "' (neither a byte symbol nor made by an earlier merge)");
        }
        const int32_t id = static_cast<int32_t>(vocab_.size());
        vocab_.push_back(a + b);
        encoder[vocab_.back()] = id;
    }
    sot_ = static_cast<int32_t>(vocab_.size());
    vocab_.emplace_back(kSotText);
    eot_ = static_cast<int32_t>(vocab_.size());
    vocab_.emplace_back(kEotText);

    ranks_.clear();
    ranks_.reserve(merges_.size() * 2);
    for (size_t m = 0; m < merges_.size(); ++m) {
        const auto& [a, b] = merges_[m];
        ranks_[pair_key(encoder.at(a), encoder.at(b))] = {static_cast<int32_t>(m), encoder.at(a + b)};
    }
    for (int k = 0; k < 256; ++k) {
        const uint8_t byte = order[k];
        std::string s;
        utf8_append(s, clip_byte_to_unicode(byte));
        byte_id_[byte] = encoder.at(s);
        byte_eow_id_[byte] = encoder.at(s + std::string(kEow));
    }

    bytes_.assign(vocab_.size(), std::string());
    for (size_t id = 0; id < vocab_.size(); ++id) {
        if (static_cast<int32_t>(id) == sot_ || static_cast<int32_t>(id) == eot_) continue;
        const bool ok = symbol_bytes(vocab_[id], bytes_[id]);
        CC_CHECK(ok, source, ": symbol '", vocab_[id], "' is not in bytes_to_unicode form");
    }

    // FNV-1a 64 of the merges text.
    uint64_t h = 0xcbf29ce484222325ull;
    const auto mix = [&h](std::string_view s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 0x100000001b3ull;
        }
    };
    for (const auto& [a, b] : merges_) {
        mix(a);
        mix(" ");
        mix(b);
        mix("\n");
    }
    hash_ = h;
    cache_ = std::make_shared<Cache>();
}

// ---------------------------------------------------------------- files ----

namespace {
// A gzip file's contents (zlib's inflate with gzip framing).
std::string gunzip(const std::string& gz, const std::string& path) {
    z_stream z{};
    CC_CHECK(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK, "zlib inflateInit2 failed");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    z.avail_in = uInt(gz.size());
    std::string out;
    char buf[1 << 16];
    int rc = Z_OK;
    while (rc == Z_OK) {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof buf;
        rc = inflate(&z, Z_NO_FLUSH);
        out.append(buf, sizeof buf - z.avail_out);
        if (rc == Z_BUF_ERROR && z.avail_in == 0) break;
    }
    inflateEnd(&z);
    CC_REQUIRE(rc == Z_STREAM_END, "tokenizer merges file '", path, "': gzip data is corrupt or truncated (",
               z.msg ? z.msg : "zlib error", ")");
    return out;
}
}  // namespace

BpeTokenizer BpeTokenizer::from_file(const std::string& path, bool clip_file) {
    std::ifstream f(path, std::ios::binary);
    if (!f) CC_USER_FAIL("cannot open tokenizer merges file '", path, "'");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CC_REQUIRE(!f.bad(), "error reading tokenizer merges file '", path, "'");
    CC_REQUIRE(!text.empty(), "tokenizer merges file '", path, "' is empty");
    if (text.size() >= 2 && static_cast<uint8_t>(text[0]) == 0x1F && static_cast<uint8_t>(text[1]) == 0x8B)
        text = gunzip(text, path);  // OpenAI ships bpe_simple_vocab_16e6.txt.gz

    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos <= text.size();) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string_view line(text.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
        pos = nl + 1;
    }
    // A final newline leaves one empty "line" behind; trailing blank lines are ignored.
    while (lines.size() > 1 && lines.back().empty()) lines.pop_back();

    if (lines[0].find("#version") == std::string_view::npos)
        CC_USER_FAIL(path, ":1: expected a '#version: ...' header line, found ", quoted_line(lines[0]));

    // OpenAI's bpe_simple_vocab_16e6.txt (its header line names it) holds 262,144 merge
    // lines of which CLIP reads the first 48,894: read it so wherever a merges file is
    // taken (data.tokenizer, eval --tokenizer, ...), not only through load_clip_merges.
    if (lines[0].rfind("\"bpe_simple_vocab_16e6.txt#version", 0) == 0) clip_file = true;
    size_t n = lines.size() - 1;
    if (clip_file) {
        if (n < static_cast<size_t>(kClipNumMerges))
            CC_USER_FAIL(path, ": has ", n, " merges; CLIP's bpe_simple_vocab_16e6.txt has at least ",
                    kClipNumMerges);
        n = kClipNumMerges;
    }
    std::vector<Merge> merges;
    std::vector<int> line_numbers;
    merges.reserve(n);
    line_numbers.reserve(n);
    for (size_t k = 1; k <= n; ++k) {
        const std::string_view line = lines[k];
        const size_t sp = line.find(' ');
        if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
            line.find_first_of(" \t", sp + 1) != std::string_view::npos)
            CC_USER_FAIL(path, ":", k + 1, ": malformed merge line ", quoted_line(line),
                    " (expected two symbols separated by one space)");
        merges.emplace_back(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)));
        line_numbers.push_back(static_cast<int>(k + 1));
    }
    BpeTokenizer t;
    t.merges_ = std::move(merges);
    t.build(&line_numbers, path);
    return t;
}

BpeTokenizer BpeTokenizer::load(const std::string& path) { return from_file(path, false); }

BpeTokenizer BpeTokenizer::load_clip_merges(const std::string& path) {
    BpeTokenizer t = from_file(path, true);
    CC_REQUIRE(t.vocab_size() == kClipVocabSize, path, ": vocabulary of ", t.vocab_size(), " ids");
    return t;
}

void BpeTokenizer::save(const std::string& path) const {
    errno = 0;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) CC_USER_FAIL("cannot write tokenizer merges file '", path, "': ", std::strerror(errno));
    // No newline after the last line: open_clip's SimpleTokenizer (and OpenAI's) reads
    // text.split('\n')[1:48895], and a final newline would give it one empty merge more
    // than we have, shifting start/end of text by one id (docs/interop.md). Our reader
    // takes both forms.
    std::string out = "#version: 0.2";
    for (const auto& [a, b] : merges_) {
        out += '\n';
        out += a;
        out += ' ';
        out += b;
    }
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    f.flush();
    const int err = errno;
    f.close();
    CC_REQUIRE(!f.fail(), "error writing tokenizer merges file '", path, "': ",
               err ? std::strerror(err) : std::strerror(errno ? errno : EIO));
}

std::string BpeTokenizer::id_hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash_));
    return buf;
}

const std::string& BpeTokenizer::token_string(int32_t id) const {
    CC_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
    return vocab_[static_cast<size_t>(id)];
}

// ------------------------------------------------------------------ BPE ----

void BpeTokenizer::bpe_uncached(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<int32_t> word(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) word[i] = byte_id_[static_cast<uint8_t>(piece[i])];
    word.back() = byte_eow_id_[static_cast<uint8_t>(piece.back())];

    std::vector<int32_t> next;
    next.reserve(word.size());
    while (word.size() > 1) {
        // The pair of lowest rank, then every occurrence of it, left to right.
        int32_t best_rank = INT32_MAX, merged = -1;
        uint64_t best = 0;
        for (size_t i = 0; i + 1 < word.size(); ++i) {
            const auto it = ranks_.find(pair_key(word[i], word[i + 1]));
            if (it != ranks_.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                merged = it->second.second;
                best = it->first;
            }
        }
        if (merged < 0) break;
        const int32_t a = static_cast<int32_t>(best >> 32), b = static_cast<int32_t>(best & 0xFFFFFFFFu);
        next.clear();
        for (size_t i = 0; i < word.size();) {
            if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
                next.push_back(merged);
                i += 2;
            } else {
                next.push_back(word[i++]);
            }
        }
        word.swap(next);
    }
    out.insert(out.end(), word.begin(), word.end());
}

void BpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    {
        std::lock_guard<std::mutex> lock(cache_->mu);
        const auto it = cache_->map.find(std::string(piece));
        if (it != cache_->map.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    bpe_uncached(piece, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->map.size() >= Cache::kMaxEntries) cache_->map.clear();
    cache_->map.emplace(std::string(piece), std::move(ids));
}

std::vector<int32_t> BpeTokenizer::tokenize(std::string_view text) const {
    const std::string cleaned = clip_clean_text(text);
    std::vector<int32_t> ids;
    ids.reserve(cleaned.size() / 2 + 1);
    for (const std::string_view piece : clip_pretokenize(cleaned)) {
        if (piece == kSotText) ids.push_back(sot_);
        else if (piece == kEotText) ids.push_back(eot_);
        else bpe(piece, ids);
    }
    return ids;
}

void BpeTokenizer::encode_into(std::string_view text, int context, std::span<int32_t> out) const {
    CC_REQUIRE(context >= 2, "context length ", context, " leaves no room for <|startoftext|> and <|endoftext|>");
    CC_CHECK(out.size() == static_cast<size_t>(context), "output has ", out.size(), " ids, context is ", context);
    const std::vector<int32_t> ids = tokenize(text);
    const size_t ctx = static_cast<size_t>(context);
    const size_t n = std::min(ids.size(), ctx - 2);  // text ids kept
    out[0] = sot_;
    std::copy(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), out.begin() + 1);
    if (ids.size() + 2 > ctx) {
        // open_clip: tokens[:context]; tokens[-1] = eot. Here 1 + n = ctx - 1.
        out[ctx - 1] = eot_;
    } else {
        out[n + 1] = eot_;
        std::fill(out.begin() + static_cast<std::ptrdiff_t>(n + 2), out.end(), 0);
    }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, int context) const {
    CC_REQUIRE(context >= 2, "context length ", context, " leaves no room for <|startoftext|> and <|endoftext|>");
    std::vector<int32_t> out(static_cast<size_t>(context));
    encode_into(text, context, out);
    return out;
}

void BpeTokenizer::encode_batch_into(const std::vector<std::string>& texts, int context,
                                     std::span<int32_t> out) const {
    CC_REQUIRE(context >= 2, "context length ", context, " leaves no room for <|startoftext|> and <|endoftext|>");
    CC_CHECK(out.size() == texts.size() * static_cast<size_t>(context), "output has ", out.size(),
             " ids, want ", texts.size(), " x ", context);
    for (size_t i = 0; i < texts.size(); ++i)
        encode_into(texts[i], context, out.subspan(i * static_cast<size_t>(context), static_cast<size_t>(context)));
}

std::vector<int32_t> BpeTokenizer::encode_batch(const std::vector<std::string>& texts, int context) const {
    CC_REQUIRE(context >= 2, "context length ", context, " leaves no room for <|startoftext|> and <|endoftext|>");
    std::vector<int32_t> out(texts.size() * static_cast<size_t>(context));
    encode_batch_into(texts, context, out);
    return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
    std::string raw;
    for (const int32_t id : ids) {
        CC_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
        if (id == eot_) break;
        if (id == sot_) continue;
        raw += bytes_[static_cast<size_t>(id)];
    }
    std::string text = utf8_sanitize(raw);
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kEow.size(), kEow) == 0) {
            out.push_back(' ');
            i += kEow.size();
        } else {
            out.push_back(text[i++]);
        }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

}  // namespace curaclip
