// Byte-level BPE tokenizer, the same as OpenAI CLIP's simple_tokenizer.py.
//
// Vocabulary (ids in this order, as CLIP builds it):
//   [0, 256)            the 256 byte symbols, in bytes_to_unicode() order
//   [256, 512)          the same with "</w>" (a byte that ends a word)
//   [512, 512 + M)      one symbol per merge, in merge (rank) order
//   512 + M             <|startoftext|>
//   512 + M + 1         <|endoftext|>   (the largest id: the text tower pools there)
// With CLIP's 48894 merges that is 49408 ids.
//
// Text goes through clip_clean_text / clip_pretokenize (text_normalize.h: exact
// for ASCII, an approximation beyond it), each piece's UTF-8 bytes become
// symbols (the last one with "</w>") and pairs merge by rank exactly as CLIP's
// bpe(), with a per-tokenizer cache of the pieces already seen.
//
// Files: CLIP's merges format, a "#version: ..." header line and one "a b" merge
// per line, the symbols written in bytes_to_unicode() form; save() writes no newline
// after the last merge, so that open_clip's SimpleTokenizer (once the file is gzipped)
// builds the very same ids (a final newline gives it one empty merge more). The tokenizer id is
// FNV-1a 64 of the merges text (each merge as "a b\n", header excluded), so it
// does not depend on how the file was written; datasets store it and refuse a
// tokenizer whose id differs.
//
// A tokenizer is immutable once built; copies share the (mutex-guarded) cache,
// so const methods may be called from several threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace curaclip {

class BpeTokenizer {
public:
    static constexpr int kClipContext = 77;
    static constexpr int kClipVocabSize = 49408;
    static constexpr int kClipNumMerges = 49152 - 256 - 2;  // 48894
    static constexpr int kNumByteSymbols = 512;             // bytes, and bytes with </w>

    using Merge = std::pair<std::string, std::string>;  // symbols in bytes_to_unicode form

    // No merges: 512 byte symbols + 2 specials.
    BpeTokenizer();
    // From merges in rank order. Every symbol of a merge must be a byte symbol or
    // the result of an earlier merge; `source` names where they came from in errors.
    explicit BpeTokenizer(std::vector<Merge> merges, const std::string& source = "merges");

    // Our merges file (save()'s format; any "#version" header line; all merges), or
    // OpenAI's (plain or gzipped, recognised by its header line: as load_clip_merges).
    static BpeTokenizer load(const std::string& path);
    // OpenAI's bpe_simple_vocab_16e6.txt (plain text): its first 48894 merges,
    // as CLIP takes lines[1:49152-256-2+1]. Gives the 49408-id CLIP vocabulary.
    static BpeTokenizer load_clip_merges(const std::string& path);
    // Learns merges from captions until the vocabulary has vocab_size ids (or no
    // pair is left to merge: then it is smaller; check vocab_size()). Words are
    // counted after clip_clean_text + clip_pretokenize; each step merges the most
    // frequent adjacent pair (ties: the smaller pair of ids); a pair whose merged
    // symbol already exists is never merged, so every id stays reachable.
    static BpeTokenizer train(const std::vector<std::string>& captions, int vocab_size);

    void save(const std::string& path) const;

    int vocab_size() const { return static_cast<int>(vocab_.size()); }
    int num_merges() const { return static_cast<int>(merges_.size()); }
    int32_t sot_id() const { return sot_; }
    int32_t eot_id() const { return eot_; }
    const std::vector<Merge>& merges() const { return merges_; }
    // The symbol of an id in bytes_to_unicode form ("a</w>", "<|endoftext|>", ...).
    const std::string& token_string(int32_t id) const;

    // Stable id of this tokenizer (FNV-1a 64 of the merges text) and its hex form.
    uint64_t id() const { return hash_; }
    std::string id_hex() const;

    // The BPE ids of a text, without <|startoftext|>/<|endoftext|> around it (a
    // literal "<|endoftext|>" in the text does give that id, as in CLIP).
    std::vector<int32_t> tokenize(std::string_view text) const;

    // Exactly `context` ids: sot, the text's ids, eot, zeros. A text too long is
    // cut to `context` ids with eot as the last one (open_clip's rule). context >= 2.
    std::vector<int32_t> encode(std::string_view text, int context = kClipContext) const;
    void encode_into(std::string_view text, int context, std::span<int32_t> out) const;
    // Many captions into a row-major [texts.size(), context] buffer.
    std::vector<int32_t> encode_batch(const std::vector<std::string>& texts,
                                      int context = kClipContext) const;
    void encode_batch_into(const std::vector<std::string>& texts, int context,
                           std::span<int32_t> out) const;

    // Text of ids, as CLIP's decode: sot is skipped, decoding stops at the first
    // eot (what follows it is padding), "</w>" becomes a space, invalid UTF-8
    // becomes U+FFFD; trailing spaces are trimmed. Ids out of range -> Error.
    std::string decode(std::span<const int32_t> ids) const;

private:
    struct Cache;
    void build(const std::vector<int>* line_numbers, const std::string& source);
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void bpe_uncached(std::string_view piece, std::vector<int32_t>& out) const;
    static BpeTokenizer from_file(const std::string& path, bool clip_file);

    std::vector<Merge> merges_;
    std::vector<std::string> vocab_;  // id -> symbol, bytes_to_unicode form
    std::vector<std::string> bytes_;  // id -> raw bytes for decode ("</w>" kept literally)
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> ranks_;  // (a<<32|b) -> (rank, merged id)
    std::array<int32_t, 256> byte_id_{};
    std::array<int32_t, 256> byte_eow_id_{};
    int32_t sot_ = 0, eot_ = 0;
    uint64_t hash_ = 0;
    std::shared_ptr<Cache> cache_;
};

// CLIP's bytes_to_unicode(): the code point standing for each byte.
uint32_t clip_byte_to_unicode(uint8_t b);
// Inverse; -1 when cp stands for no byte.
int clip_unicode_to_byte(uint32_t cp);
// The 256 bytes in CLIP's vocabulary order (printable ones first).
const std::array<uint8_t, 256>& clip_byte_order();

}  // namespace curaclip
