#include "mode/ensemble.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "backend/registry.h"
#include "encoder/bert_encoder.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/dataset_reader.h"
#include "mode/encoder_routing.h"
#include "model/clip_model.h"
#include "tokenizer/bpe_tokenizer.h"

namespace fs = std::filesystem;

namespace curaclip::mode {

RoutingScope parse_routing_scope(const std::string& s) {
    if (s == "task") return RoutingScope::task;
    if (s == "class") return RoutingScope::per_class;
    CC_USER_FAIL("--routing-scope: '", s, "' is not one of task, class");
}

const char* routing_scope_name(RoutingScope s) { return s == RoutingScope::task ? "task" : "class"; }

std::vector<float> mix_zero_shot_scores(const std::vector<std::vector<float>>& S, int64_t I, int64_t K,
                                        const std::vector<double>& w) {
    const int64_t n = int64_t(S.size());
    CC_CHECK(n > 0 && (int64_t(w.size()) == n || int64_t(w.size()) == K * n), "mix_zero_shot_scores: ", w.size(),
             " weights for ", n, " experts and ", K, " classes");
    const bool per_class = int64_t(w.size()) != n;  // (K = 1: both readings agree)
    std::vector<float> total(size_t(I * K), 0.0f);
    for (int64_t c = 0; c < n; ++c) {
        CC_CHECK(int64_t(S[size_t(c)].size()) == I * K, "mix_zero_shot_scores: expert ", c, " has ",
                 S[size_t(c)].size(), " scores, expected ", I * K);
        const float* x = S[size_t(c)].data();
        for (int64_t i = 0; i < I; ++i)
            for (int64_t k = 0; k < K; ++k)
                total[size_t(i * K + k)] += float(per_class ? w[size_t(k * n + c)] : w[size_t(c)]) * x[i * K + k];
    }
    return total;
}

std::vector<std::string> resolve_expert_checkpoints(const std::string& spec) {
    CC_REQUIRE(!spec.empty(), "--experts: no expert checkpoints given");
    std::vector<std::string> items;
    std::stringstream ss(spec);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) items.push_back(item);
    CC_REQUIRE(!items.empty(), "--experts: no expert checkpoints in '", spec, "'");
    auto checkpoint_of = [](const std::string& p) {
        CC_REQUIRE(fs::exists(p), "--experts: ", p, " does not exist");
        return fs::is_directory(p) ? resolve_checkpoint(p, "latest") : p;
    };
    // One folder that holds expert_<c> run folders (train-experts' output).
    if (items.size() == 1 && fs::is_directory(items[0]) && !fs::exists(fs::path(items[0]) / "latest")) {
        std::map<int, std::string> found;
        for (const auto& e : fs::directory_iterator(items[0])) {
            const std::string name = e.path().filename().string();
            if (!e.is_directory() || name.rfind("expert_", 0) != 0) continue;
            const std::string num = name.substr(7);
            if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
            found[std::stoi(num)] = e.path().string();
        }
        CC_REQUIRE(!found.empty(), "--experts: ", items[0], " holds no expert_<c> run folders and no checkpoint");
        std::vector<std::string> out;
        for (const auto& [c, path] : found) {
            CC_REQUIRE(c == int(out.size()), "--experts: ", items[0], " has no expert_", out.size(), " (experts must be 0..n-1)");
            out.push_back(checkpoint_of(path));
        }
        return out;
    }
    std::vector<std::string> out;
    for (const auto& i : items) out.push_back(checkpoint_of(i));
    return out;
}

namespace {
// exp(t) capped at 100 (as training caps it); Error for a non-finite t, which
// would make every score NaN in the logits space and the JSON unreadable.
double logit_scale_of(ClipModel& model, const std::string& label) {
    auto& ps = model.params();
    for (size_t i = 0; i < ps.size(); ++i)
        if (ps[i].name == "logit_scale") {
            const double t = ps.values_to_host(i)[0];
            CC_REQUIRE(std::isfinite(t), label, ": logit_scale is ", t, ", not a finite number");
            return std::exp(std::min(t, std::log(100.0)));
        }
    CC_FAIL("model has no logit_scale parameter");
}

struct ExpertData {
    EvalEmbeddings emb;
    std::vector<float> cls;  // [K, D]
    double scale = 1;
};

// s * a[q0:q0+m] . b^T -> out [m, nb]
void scores(const std::vector<float>& a, int64_t q0, int64_t m, const std::vector<float>& b, int64_t nb, int64_t D,
            float s, float* out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(nb), int(D), s, a.data() + q0 * D, int(D), b.data(),
                int(D), 0.0f, out, int(nb));
}

// w_zs: [n] (one zero-shot task) or [K, n] (each class name its own task).
EvalReport combine(const std::vector<ExpertData>& ex, const std::vector<double>& w_zs, const std::vector<double>& w_i2t,
                   const std::vector<double>& w_t2i /* [N, n] or empty: w_i2t for every query */, bool cosine,
                   int64_t templates, const std::string& dataset) {
    // N captions (text queries), I distinct images (image queries, eval/evaluate.h).
    const EvalEmbeddings& e0 = ex[0].emb;
    const int64_t n_ex = int64_t(ex.size()), N = e0.n, I = e0.n_images, D = e0.dim;
    EvalReport r;
    r.dataset = dataset;
    if (e0.has_labels) {
        const int64_t K = int64_t(e0.classnames.size());
        std::vector<std::vector<float>> S(size_t(n_ex), std::vector<float>(size_t(I * K)));
        for (int64_t c = 0; c < n_ex; ++c)
            scores(ex[size_t(c)].emb.images, 0, I, ex[size_t(c)].cls, K, D, cosine ? 1.0f : float(ex[size_t(c)].scale),
                   S[size_t(c)].data());
        r.zero_shot = zero_shot_accuracy_from_logits(mix_zero_shot_scores(S, I, K, w_zs), e0.labels, K, e0.dup);
        r.templates = templates;
    }
    std::vector<float> one;
    r.retrieval = retrieval_recall_scored(I, e0.text_image, [&](bool text_queries, int64_t q0, int64_t m, float* out) {
        const int64_t n_items = text_queries ? I : N;
        one.resize(size_t(m * n_items));
        std::fill(out, out + m * n_items, 0.0f);
        for (int64_t c = 0; c < n_ex; ++c) {
            const EvalEmbeddings& e = ex[size_t(c)].emb;
            const float s = cosine ? 1.0f : float(ex[size_t(c)].scale);
            scores(text_queries ? e.texts : e.images, q0, m, text_queries ? e.images : e.texts, n_items, D, s,
                   one.data());
            for (int64_t i = 0; i < m; ++i) {
                const float w = float(text_queries && !w_t2i.empty() ? w_t2i[size_t((q0 + i) * n_ex + c)]
                                                                      : w_i2t[size_t(c)]);
                float* o = out + i * n_items;
                const float* x = one.data() + i * n_items;
                for (int64_t j = 0; j < n_items; ++j) o[j] += w * x[j];
            }
        }
    }, e0.dup);
    return r;
}

std::string json_array(const std::vector<double>& v) {
    std::ostringstream os;
    os.precision(6);
    os << "[";
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    return os.str() + "]";
}
}  // namespace

EnsembleReport evaluate_ensemble(const std::vector<std::string>& expert_checkpoints, const Assignment& assign,
                                 const std::string& routing_checkpoint, const std::string& tokenizer_path,
                                 const std::string& eval_path, const Communicator& comm, const EnsembleOptions& opt) {
    const int64_t n = int64_t(expert_checkpoints.size());
    CC_REQUIRE(n == assign.n_experts, "--experts: ", n, " expert checkpoints but ", assign.path, " has ",
               assign.n_experts, " experts");
    const bool by_encoder = !opt.routing_encoder.empty();
    if (!by_encoder) {
        CC_REQUIRE(assign.encoder_id.empty(), "the centers of ", assign.path, " were made by the sentence encoder '",
                   assign.encoder_id, "' (", assign.encoder, "): route with it (--routing-encoder), not with a CLIP "
                   "checkpoint");
        CC_REQUIRE(!routing_checkpoint.empty(), "routing needs the model that embedded the captions for clustering: ",
                   assign.path, " does not name it (no 'checkpoint' attribute); pass --routing-checkpoint");
        CC_REQUIRE(fs::exists(routing_checkpoint), "routing checkpoint ", routing_checkpoint,
                   " (the clustering embedding model) does not exist");
    }
    CC_REQUIRE(fs::exists(eval_path), "--data ", eval_path, " does not exist");
    const BpeTokenizer tok = BpeTokenizer::load(tokenizer_path);
    const int64_t T = int64_t(opt.templates.size());
    auto be = make_backend(opt.backend);
    EnsembleReport rep;
    rep.experts = expert_checkpoints;
    rep.routing_checkpoint = by_encoder ? "encoder " + opt.routing_encoder : routing_checkpoint;
    const RoutingCenters centers{assign.m, assign.dim, assign.n_experts, assign.fine_centers.data(),
                                 assign.fine_to_expert.data()};

    // Routing: the task's texts in the clustering embedding space.
    std::vector<double> w_t2i;
    auto route_class_names = [&](const float* cls, const std::vector<std::string>& names) {
        const int64_t K = int64_t(names.size());
        rep.classnames = names;
        rep.class_routes = route_texts(cls, K, centers);
        if (opt.scope == RoutingScope::task) {
            rep.weights_zeroshot = routing_weights(cls, K, centers, opt.routing);
            return;
        }
        rep.weights_per_class = routing_weights_per_query(cls, K, centers, opt.routing);
        rep.weights_zeroshot.assign(size_t(n), 0.0);
        for (int64_t k = 0; k < K; ++k)
            for (int64_t c = 0; c < n; ++c)
                rep.weights_zeroshot[size_t(c)] += rep.weights_per_class[size_t(k * n + c)] / double(K);
    };
    if (by_encoder) {
        // The pooling the centers were made with is part of the encoder's id ("bert NAME POOLING HASH").
        const std::string& id = assign.encoder_id;
        const size_t h = id.rfind(' '), p = h == std::string::npos ? h : id.rfind(' ', h - 1);
        const std::string pooling = p == std::string::npos ? std::string() : id.substr(p + 1, h - p - 1);
        encoder::BertEncoder enc(*be, opt.routing_encoder, opt.batch, pooling);
        check_routing_encoder(assign, enc);
        const io::DatasetReader reader(eval_path, io::DatasetExpect{});
        const int64_t N = reader.size();
        const std::vector<float> texts = encoder_caption_embeddings(enc, eval_path, comm);
        if (reader.has_labels() && !reader.classnames().empty()) {
            route_class_names(encoder_class_embeddings(enc, reader.classnames(), opt.templates).data(),
                              reader.classnames());
        } else {
            rep.weights_zeroshot.assign(size_t(n), 1.0 / double(n));
        }
        rep.weights_i2t = routing_weights(texts.data(), N, centers, opt.routing);
        w_t2i = routing_weights_per_query(texts.data(), N, centers, opt.routing);
        rep.weights_t2i_mean.assign(size_t(n), 0.0);
        for (int64_t q = 0; q < N; ++q)
            for (int64_t c = 0; c < n; ++c) rep.weights_t2i_mean[size_t(c)] += w_t2i[size_t(q * n + c)] / double(N);
    } else {
        const ModelConfig cfg = weights_model_config(routing_checkpoint);
        CC_REQUIRE(cfg.embed_dim == assign.dim, "routing checkpoint ", routing_checkpoint, " embeds in ", cfg.embed_dim,
                   " dimensions but the fine centers of ", assign.path, " have ", assign.dim);
        ClipModel model(*be, cfg, opt.batch);
        load_weights(routing_checkpoint, model.params(), /*with_optimizer=*/false);
        const std::string label = "routing checkpoint " + routing_checkpoint;
        const EvalEmbeddings e = embed_eval_set(model, tok, eval_path, comm, /*images=*/false, label);
        if (e.has_labels) {
            route_class_names(zero_shot_classifier(model, tok, e.classnames, opt.templates, label).data(), e.classnames);
        } else {
            rep.weights_zeroshot.assign(size_t(n), 1.0 / double(n));
        }
        rep.weights_i2t = routing_weights(e.texts.data(), e.n, centers, opt.routing);
        w_t2i = routing_weights_per_query(e.texts.data(), e.n, centers, opt.routing);
        rep.weights_t2i_mean.assign(size_t(n), 0.0);
        for (int64_t q = 0; q < e.n; ++q)
            for (int64_t c = 0; c < n; ++c) rep.weights_t2i_mean[size_t(c)] += w_t2i[size_t(q * n + c)] / double(e.n);
    }

    std::vector<ExpertData> ex(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) {
        const std::string& ck = expert_checkpoints[size_t(c)];
        const ModelConfig cfg = weights_model_config(ck);
        ClipModel model(*be, cfg, opt.batch);
        load_weights(ck, model.params(), /*with_optimizer=*/false);
        ExpertData& d = ex[size_t(c)];
        const std::string label = "expert " + std::to_string(c) + " (checkpoint " + ck + ")";
        d.emb = embed_eval_set(model, tok, eval_path, comm, /*images=*/true, label);
        if (c > 0)
            CC_REQUIRE(d.emb.dim == ex[0].emb.dim, "expert ", c, " (", ck, ") embeds in ", d.emb.dim,
                       " dimensions, expert 0 in ", ex[0].emb.dim);
        if (d.emb.has_labels) d.cls = zero_shot_classifier(model, tok, d.emb.classnames, opt.templates, label);
        d.scale = logit_scale_of(model, label);
        rep.logit_scales.push_back(d.scale);
        // The expert alone.
        rep.expert_reports.push_back(evaluate_embeddings(d.emb, d.cls, T, eval_path));
    }
    rep.routed = combine(ex, rep.weights_per_class.empty() ? rep.weights_zeroshot : rep.weights_per_class,
                         rep.weights_i2t, w_t2i, opt.cosine, T, eval_path);
    const std::vector<double> uni(size_t(n), 1.0 / double(n));
    rep.uniform = combine(ex, uni, uni, {}, opt.cosine, T, eval_path);
    return rep;
}

std::string format_ensemble_report(const EnsembleReport& r, const EnsembleOptions& opt) {
    std::ostringstream os;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "routing: %s schedule, lambda %.3g, temperature %.3g, zero-shot routed per %s, ensemble of %s; "
                  "routing model %s\n",
                  routing_schedule_name(opt.routing.schedule), opt.routing.lambda, opt.routing.temperature,
                  opt.scope == RoutingScope::task ? "task" : "class name",
                  opt.cosine ? "cosine similarities" : "logits (each expert's own logit scale)",
                  r.routing_checkpoint.c_str());
    os << buf;
    os << "expert  weight(zero-shot)  weight(i2t)  mean weight(t2i)  logit scale  zero-shot top-1  mean per-class recall"
          "  i2t R@1  t2i R@1  checkpoint\n";
    for (size_t c = 0; c < r.experts.size(); ++c) {
        const EvalReport& e = r.expert_reports[c];
        std::snprintf(buf, sizeof buf, "%6zu  %17.4f  %11.4f  %16.4f  %11.2f  %14.2f%%  %20.2f%%  %6.2f%%  %6.2f%%  %s\n",
                      c, r.weights_zeroshot[c], r.weights_i2t[c], r.weights_t2i_mean[c], r.logit_scales[c],
                      100 * e.zero_shot.top1, 100 * e.zero_shot.mean_per_class_recall,
                      100 * e.retrieval.image_to_text_r1, 100 * e.retrieval.text_to_image_r1, r.experts[c].c_str());
        os << buf;
    }
    if (!r.class_routes.empty()) {
        os << "zero-shot routes (class name -> nearest fine center -> expert, squared distance):";
        for (size_t k = 0; k < r.class_routes.size(); ++k) {
            std::snprintf(buf, sizeof buf, "%s %s->%lld->%d (%.3f)", k ? "," : "", r.classnames[k].c_str(),
                          (long long)r.class_routes[k].fine, r.class_routes[k].expert, r.class_routes[k].d2);
            os << buf;
        }
        os << "\n";
    }
    os << "routed ensemble (MoDE)\n" << format_report(r.routed);
    os << "uniform average of the experts\n" << format_report(r.uniform);
    return os.str();
}

std::string ensemble_report_json(const EnsembleReport& r, const EnsembleOptions& opt) {
    std::ostringstream os;
    os << "\"routing\": {\"schedule\": \"" << routing_schedule_name(opt.routing.schedule) << "\", \"lambda\": "
       << opt.routing.lambda << ", \"temperature\": " << opt.routing.temperature << ", \"scope\": \""
       << routing_scope_name(opt.scope) << "\", \"space\": \""
       << (opt.cosine ? "cosine" : "logits") << "\", \"checkpoint\": \"" << r.routing_checkpoint << "\"}, ";
    os << "\"weights_zeroshot\": " << json_array(r.weights_zeroshot) << ", \"weights_i2t\": " << json_array(r.weights_i2t)
       << ", \"weights_t2i_mean\": " << json_array(r.weights_t2i_mean) << ", \"logit_scales\": "
       << json_array(r.logit_scales) << ", ";
    if (!r.weights_per_class.empty()) {
        const size_t n = r.experts.size();
        os << "\"weights_zeroshot_per_class\": [";
        for (size_t k = 0; k * n < r.weights_per_class.size(); ++k)
            os << (k ? ", " : "")
               << json_array(std::vector<double>(r.weights_per_class.begin() + long(k * n),
                                                 r.weights_per_class.begin() + long((k + 1) * n)));
        os << "], ";
    }
    os << "\"class_routes\": [";
    for (size_t k = 0; k < r.class_routes.size(); ++k)
        os << (k ? ", " : "") << "{\"class\": \"" << r.classnames[k] << "\", \"fine\": " << r.class_routes[k].fine
           << ", \"expert\": " << r.class_routes[k].expert << ", \"d2\": " << r.class_routes[k].d2 << "}";
    os << "], ";
    os << "\"experts\": [";
    for (size_t c = 0; c < r.experts.size(); ++c)
        os << (c ? ", " : "") << "{\"checkpoint\": \"" << r.experts[c] << "\", " << report_json_fields(r.expert_reports[c])
           << "}";
    os << "], \"routed\": {" << report_json_fields(r.routed) << "}, \"uniform\": {" << report_json_fields(r.uniform) << "}";
    return os.str();
}

}  // namespace curaclip::mode
