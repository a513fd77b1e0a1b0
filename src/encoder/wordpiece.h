// BERT's uncased WordPiece tokenizer, as Hugging Face `tokenizers` runs it for
// BertTokenizerFast (BertNormalizer -> BertPreTokenizer -> WordPiece -> the
// [CLS] ... [SEP] template), the tokenizer of all-MiniLM-L6-v2, SimCSE, BERT-base.
//
// Normalization (tokenizers' BertNormalizer, clean_text = handle_chinese_chars = true,
// strip_accents = lowercase = true), in this order:
//   1. clean text: drop U+0000, U+FFFD and every "other" code point (Unicode category
//      Cc, Cf, Cs, Co, Cn) except \t \n \r; every white-space code point (Unicode
//      White_Space, \t \n \r included) becomes a space;
//   2. CJK ideographs (the ranges of is_chinese_char) get a space on either side;
//   3. accents: NFD (utf8proc), then nonspacing marks (Mn) removed;
//   4. lower-casing, code point by code point (utf8proc's simple mapping; tokenizers
//      uses the full mapping, which differs only for a handful of code points such as
//      U+0130, and those lose their mark in step 3 first).
// Pre-tokenizing (BertPreTokenizer): split at white space (removed) and isolate each
// punctuation code point (ASCII punctuation, which includes $ + < = > ^ ` | ~, or a
// Unicode P* category) as a word of its own.
// WordPiece: a word longer than max_input_chars_per_word (100) code points is [UNK];
// otherwise greedy longest match from the left, continuation pieces prefixed "##";
// a word with any unmatched remainder is a single [UNK] (not partial pieces).
// Encoding: [CLS] pieces [SEP], the pieces truncated to max_length - 2 (tokenizers'
// truncation="longest_first" for one sequence). Special-token strings inside the text
// ("[SEP]") are NOT matched as special tokens here (tokenizers would): captions do not
// hold them, and treating caption text as control tokens is not wanted.
// Invalid UTF-8 bytes become U+FFFD and are dropped by step 1.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace curaclip::encoder {

class WordPieceTokenizer {
public:
    // vocab: one token per entry, the id is the index (vocab.txt order). Must hold
    // [CLS], [SEP], [PAD] and [UNK] (an Error naming the missing one otherwise).
    explicit WordPieceTokenizer(std::vector<std::string> vocab, int max_input_chars_per_word = 100);
    // vocab.txt: one token per line (a trailing \r is dropped); an Error naming the
    // file when it is missing, empty or lacks a special token.
    static WordPieceTokenizer from_file(const std::string& vocab_txt);

    // Steps 1-4 and the pre-tokenizer: the words and punctuation marks, normalized.
    std::vector<std::string> basic_tokenize(std::string_view text) const;
    // WordPiece ids of one (normalized) word, appended to out.
    void wordpiece(std::string_view word, std::vector<int32_t>& out) const;
    // [CLS] pieces [SEP] with the pieces truncated to max_length - 2 (max_length >= 2).
    std::vector<int32_t> encode(std::string_view text, int max_length) const;

    int32_t cls_id() const { return cls_; }
    int32_t sep_id() const { return sep_; }
    int32_t pad_id() const { return pad_; }
    int32_t unk_id() const { return unk_; }
    int64_t vocab_size() const { return int64_t(vocab_.size()); }
    const std::string& token(int32_t id) const { return vocab_.at(size_t(id)); }
    int32_t id(const std::string& token) const;  // -1 when absent

private:
    std::vector<std::string> vocab_;
    std::unordered_map<std::string, int32_t> ids_;
    int max_chars_;
    int32_t cls_ = -1, sep_ = -1, pad_ = -1, unk_ = -1;
};

// Normalization steps 1-4 alone (exposed for tests).
std::string bert_normalize(std::string_view text);

}  // namespace curaclip::encoder
