// Evaluation of a model on an HDF5 evaluation set, distributed over ranks:
// each rank embeds its contiguous block of images and captions, the blocks are
// summed into the full matrices (all-reduce), and every rank computes
// zero-shot accuracy (class names x prompt templates) and retrieval R@1/5/10.
#pragma once

#include <string>
#include <vector>

#include "eval/metrics.h"
#include "mpi/communicator.h"

namespace curaclip {

struct EvalReport {
    ZeroShotResult zero_shot;  // n = 0 when the set has no labels/class names
    RetrievalResult retrieval;
    std::string dataset;
};

// Every rank's copy of an evaluation set's embeddings by one model (rows in file order).
struct EvalEmbeddings {
    int64_t n = 0, dim = 0;
    std::vector<float> images, texts;  // [n, dim], L2-normalized
    std::vector<int32_t> labels;       // [n]
    std::vector<std::string> classnames;
    bool has_labels = false;
};
// Collective over comm: each rank embeds its block, the blocks are all-reduced.
// images = false skips the image tower (e.g. a routing model needs captions only).
EvalEmbeddings embed_eval_set(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                              const Communicator& comm, bool images = true);

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates = default_templates());

// A fixed-width table of the report, for the terminal.
std::string format_report(const EvalReport& r);
// The report as a flat JSON object body (no braces): "zeroshot_top1": ..., ...
std::string report_json_fields(const EvalReport& r);

}  // namespace curaclip
