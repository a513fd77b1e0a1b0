// `curaclip prep <source>` for users' own data (docs/data.md §Output layout, MPI, resume): any Source
// (src/prep/source.h) -> sharded HDF5 + one joined dataset file, over MPI ranks.
//
// Output, in --out DIR with --name NAME (default "data"):
//   DIR/NAME.h5                  the dataset every command takes (io/dataset_join.h:
//                                virtual datasets over the shards)
//   DIR/NAME-shards/part-UUUUU.h5            output shard u = input unit u (a tar, a block of rows)
//   DIR/NAME-shards/part-UUUUU.rejects.tsv   the samples of unit u that were skipped
//   DIR/NAME.rejects.tsv         all of them: shard, key, reason, detail (one line each)
//   DIR/tokenizer.bpe            the BPE merges the tokens were made with (trained on the
//                                captions unless --tokenizer FILE; reused when present)
//
// Work split: unit u is converted by rank u % P, in rounds of P units; after each
// round the ranks sum their counts and rank 0 prints a progress line (samples/s,
// ETA, rejected so far). A unit's shard depends only on the unit and the options,
// never on P, so 1, 2 or 4 ranks write the same bytes.
//
// Resume: a shard file exists only when complete (io/shard_writer.h), so a rerun
// with the same options skips the units whose shard exists (their counts are read
// back from the shard), removes stale .tmp files of unfinished ones and converts the
// rest. A rerun with different options is refused (each shard records a signature of
// the options that shape its bytes). A finished DIR/NAME.h5 is never overwritten.
//
// Bad samples never stop the job: each is skipped, counted per reason and listed.
// The job fails (Error, non-zero exit) when the source itself is missing or
// unreadable, or when more than max_reject of the samples read were rejected (the
// shards stay, so a rerun with a higher --max-reject only joins them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/image.h"
#include "prep/source.h"

namespace curaclip {
class Communicator;
}

namespace curaclip::prep {

struct PrepOptions {
    std::string kind;                 // webdataset | csv | tsv | jsonl | folder
    std::vector<std::string> inputs;  // positional arguments of the command
    SourceOptions source;
    ImageOptions image;
    std::string out_dir;
    std::string name = "data";
    int context = 77;                  // token context length (CLIP's 77)
    std::string tokenizer;             // merges file: ours, or OpenAI's bpe_simple_vocab_16e6.txt(.gz)
    int vocab = 8192;                  // vocabulary size when a tokenizer is trained
    int64_t bpe_sample = 200000;       // captions (the first ones, in input order) a tokenizer is trained on
    double max_reject = 0.05;          // fail when more than this share of samples is rejected
    std::string creation_command;      // recorded in every file
    bool quiet = false;                // no progress lines (tests)
};

struct PrepSummary {
    int64_t units = 0, units_skipped = 0;  // skipped: finished by an earlier run
    int64_t read = 0, kept = 0, rejected = 0;
    int64_t rejected_by_reason[kNumRejectReasons] = {};
    std::string dataset_path, rejects_path, tokenizer_path, tokenizer_id;
    double seconds = 0;
};

// Collective over comm. Every rank returns the same summary; Errors as above.
PrepSummary run_prep(const PrepOptions& options, const Communicator& comm);

}  // namespace curaclip::prep
