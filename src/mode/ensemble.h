// The routed MoDE ensemble on an evaluation set (docs/mode.md §Routing and the ensemble), and its baseline,
// the uniform average of the experts.
//
// Each expert c embeds the evaluation images and captions and the class names
// (prompt templates averaged). Its zero-shot scores are either its cosine
// similarities (space = cosine, the default, as the released MetaCLIP code
// ensembles) or its logits exp(t_c) * cosine with its own learned logit scale
// (space = logits). Cosine is the default because the logit scale is a training
// temperature, not a calibration: with logits an expert whose t_c ended higher
// would outweigh the routing weights p(c|T).
//
//   zero-shot:  scores = sum_c p(c|T) * S_c,  T = the class names (scope task, the paper's
//               and the released code's rule), or, with scope class, each class name l its own
//               task: scores[:, l] = sum_c p(c|t_l) * S_c[:, l] (as text->image routes queries)
//   text->image: query q's scores = sum_c p(c|q) * S_c(q, .)  (each query its own task)
//   image->text: scores = sum_c p(c|C) * S_c, C = the whole caption corpus as the task
//
// The routing embeddings come from the model that embedded the captions for
// clustering (the side file's checkpoint attribute, or its sentence encoder:
// EnsembleOptions::routing_encoder), as the fine centers live in that model's
// embedding space.
#pragma once

#include <string>
#include <vector>

#include "eval/evaluate.h"
#include "mode/experts.h"
#include "mode/routing.h"
#include "mpi/communicator.h"

namespace curaclip::mode {

// Which texts make one zero-shot task (eval --routing-scope).
enum class RoutingScope { task, per_class };
RoutingScope parse_routing_scope(const std::string& s);
const char* routing_scope_name(RoutingScope s);

struct EnsembleOptions {
    RoutingOptions routing;
    RoutingScope scope = RoutingScope::task;
    bool cosine = true;  // false: each expert's logits (own logit scale)
    int64_t batch = 256;
    std::string backend = "cpu";
    std::vector<std::string> templates = default_templates();  // eval --templates (eval/templates.h)
    // A sentence encoder folder (encoder/bert_encoder.h) that made the fine centers: when
    // set, it embeds the class names and the queries for routing instead of the routing
    // checkpoint, after check_routing_encoder (mode/encoder_routing.h).
    std::string routing_encoder;
};

struct EnsembleReport {
    std::vector<std::string> experts;       // checkpoint files, expert c at [c]
    std::vector<EvalReport> expert_reports;  // each expert alone
    std::vector<double> logit_scales;       // exp(t_c)
    std::vector<double> weights_zeroshot;   // p(c | class names); scope class: the mean over the classes
    std::vector<double> weights_per_class;  // scope class: p(c | class name l), [K, n]; else empty
    std::vector<std::string> classnames;    // of the zero-shot task (empty: no labels)
    std::vector<TextRoute> class_routes;    // each class name's nearest fine center and expert
    std::vector<double> weights_i2t;        // p(c | caption corpus)
    std::vector<double> weights_t2i_mean;   // mean over queries of p(c | q)
    EvalReport routed, uniform;
    std::string routing_checkpoint;
};

// Collective over comm (every rank embeds its block of the evaluation set).
EnsembleReport evaluate_ensemble(const std::vector<std::string>& expert_checkpoints, const Assignment& assign,
                                 const std::string& routing_checkpoint, const std::string& tokenizer_path,
                                 const std::string& eval_path, const Communicator& comm, const EnsembleOptions& opt);

// The ensemble's zero-shot scores [I, K] from each expert's scores S[c] ([I, K] each):
// sum_c w_c * S_c with w = [n] (one task), or column l mixed by w[l, :] with w = [K, n]
// (each class its own task). Error unless w has n or K*n entries.
std::vector<float> mix_zero_shot_scores(const std::vector<std::vector<float>>& S, int64_t I, int64_t K,
                                        const std::vector<double>& w);

// The report as a terminal table and as a JSON object body.
std::string format_ensemble_report(const EnsembleReport& r, const EnsembleOptions& opt);
std::string ensemble_report_json(const EnsembleReport& r, const EnsembleOptions& opt);

// --experts: a comma-separated list of checkpoints/run folders (expert c = the
// c-th), or one folder holding expert_0, expert_1, ... (train-experts' output).
std::vector<std::string> resolve_expert_checkpoints(const std::string& spec);

}  // namespace curaclip::mode
