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

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates = default_templates());

// A fixed-width table of the report, for the terminal.
std::string format_report(const EvalReport& r);
// The report as a flat JSON object body (no braces): "zeroshot_top1": ..., ...
std::string report_json_fields(const EvalReport& r);

}  // namespace curaclip
