// BPE training: learns merges from a caption corpus (BpeTokenizer::train).
//
// Words are counted once (after CLIP's cleaning and pre-tokenizing), each word a
// sequence of symbol ids (bytes, the last one with </w>). Pair counts are kept
// incrementally: a max-heap of (count, pair) with lazy deletion, and per pair the
// list of words that (may) contain it; a merge only revisits those words. Ties go
// to the smaller (left id, right id), so training is deterministic.
#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/check.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/text_normalize.h"

namespace curaclip {

namespace {

uint64_t key_of(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct HeapEntry {
    int64_t count;
    uint64_t key;
    // priority_queue pops the largest: the larger count, then the smaller key.
    bool operator<(const HeapEntry& o) const { return count != o.count ? count < o.count : key > o.key; }
};

}  // namespace

BpeTokenizer BpeTokenizer::train(const std::vector<std::string>& captions, int vocab_size) {
    CC_CHECK(vocab_size >= kNumByteSymbols + 2, "BPE vocabulary of ", vocab_size,
             " ids is below the ", kNumByteSymbols + 2, " byte symbols and specials");
    const size_t target_merges = static_cast<size_t>(vocab_size - kNumByteSymbols - 2);

    // ---- word frequencies ----
    std::unordered_map<std::string, int64_t> counts;
    for (const std::string& caption : captions) {
        const std::string cleaned = clip_clean_text(caption);
        for (const std::string_view piece : clip_pretokenize(cleaned)) {
            if (piece == "<|startoftext|>" || piece == "<|endoftext|>") continue;
            ++counts[std::string(piece)];
        }
    }
    std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
    counts.clear();
    std::sort(sorted.begin(), sorted.end());

    // ---- symbols ----
    const auto& order = clip_byte_order();
    std::array<int32_t, 256> byte_rank{};
    for (int k = 0; k < 256; ++k) byte_rank[order[k]] = k;
    std::vector<std::string> symbols;  // id -> symbol in bytes_to_unicode form
    symbols.reserve(kNumByteSymbols + target_merges);
    for (int k = 0; k < 256; ++k) {
        std::string s;
        utf8_append(s, clip_byte_to_unicode(order[k]));
        symbols.push_back(std::move(s));
    }
    for (int k = 0; k < 256; ++k) symbols.push_back(symbols[k] + "</w>");
    std::unordered_set<std::string> existing(symbols.begin(), symbols.end());
    existing.insert("<|startoftext|>");
    existing.insert("<|endoftext|>");

    std::vector<std::vector<int32_t>> words(sorted.size());
    std::vector<int64_t> freq(sorted.size());
    for (size_t w = 0; w < sorted.size(); ++w) {
        const std::string& s = sorted[w].first;
        freq[w] = sorted[w].second;
        auto& syms = words[w];
        syms.resize(s.size());
        for (size_t i = 0; i < s.size(); ++i) syms[i] = byte_rank[static_cast<uint8_t>(s[i])];
        syms.back() += 256;  // </w>
    }
    sorted.clear();
    sorted.shrink_to_fit();

    // ---- initial pair counts ----
    std::unordered_map<uint64_t, int64_t> pair_count;
    std::unordered_map<uint64_t, std::vector<int32_t>> where;
    for (size_t w = 0; w < words.size(); ++w) {
        const auto& syms = words[w];
        for (size_t i = 0; i + 1 < syms.size(); ++i) {
            const uint64_t k = key_of(syms[i], syms[i + 1]);
            pair_count[k] += freq[w];
            auto& list = where[k];
            if (list.empty() || list.back() != static_cast<int32_t>(w)) list.push_back(static_cast<int32_t>(w));
        }
    }
    std::vector<HeapEntry> initial;
    initial.reserve(pair_count.size());
    for (const auto& [k, c] : pair_count) initial.push_back({c, k});
    std::priority_queue<HeapEntry> heap(std::less<HeapEntry>(), std::move(initial));

    // ---- merges ----
    std::vector<Merge> merges;
    merges.reserve(target_merges);
    std::vector<int32_t> merged_word;
    std::vector<uint64_t> touched;
    while (merges.size() < target_merges && !heap.empty()) {
        const HeapEntry top = heap.top();
        heap.pop();
        const auto pc = pair_count.find(top.key);
        const int64_t current = pc == pair_count.end() ? 0 : pc->second;
        if (current != top.count) {  // stale entry: counts only ever go down
            if (current > 0) heap.push({current, top.key});
            continue;
        }
        const int32_t a = static_cast<int32_t>(top.key >> 32);
        const int32_t b = static_cast<int32_t>(top.key & 0xFFFFFFFFu);
        std::string joined = symbols[static_cast<size_t>(a)] + symbols[static_cast<size_t>(b)];
        if (existing.count(joined)) continue;  // never merge into a symbol that exists already

        const int32_t id = static_cast<int32_t>(symbols.size());
        merges.emplace_back(symbols[static_cast<size_t>(a)], symbols[static_cast<size_t>(b)]);
        existing.insert(joined);
        symbols.push_back(std::move(joined));

        std::vector<int32_t> affected = std::move(where[top.key]);
        where.erase(top.key);
        touched.clear();
        for (const int32_t w : affected) {
            auto& syms = words[static_cast<size_t>(w)];
            merged_word.clear();
            bool changed = false;
            for (size_t i = 0; i < syms.size();) {
                if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
                    merged_word.push_back(id);
                    i += 2;
                    changed = true;
                } else {
                    merged_word.push_back(syms[i++]);
                }
            }
            if (!changed) continue;  // stale entry in the word list
            const int64_t f = freq[static_cast<size_t>(w)];
            for (size_t i = 0; i + 1 < syms.size(); ++i) {
                const auto it = pair_count.find(key_of(syms[i], syms[i + 1]));
                if ((it->second -= f) == 0) pair_count.erase(it);
            }
            for (size_t i = 0; i + 1 < merged_word.size(); ++i) {
                const uint64_t k = key_of(merged_word[i], merged_word[i + 1]);
                pair_count[k] += f;
                if (merged_word[i] == id || merged_word[i + 1] == id) {
                    auto& list = where[k];
                    if (list.empty() || list.back() != w) list.push_back(w);
                    touched.push_back(k);
                }
            }
            syms.swap(merged_word);
        }
        std::sort(touched.begin(), touched.end());
        touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
        for (const uint64_t k : touched) heap.push({pair_count.at(k), k});
    }
    return BpeTokenizer(std::move(merges), "trained merges");
}

}  // namespace curaclip
