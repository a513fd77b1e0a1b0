#include "interop/open_clip_weights.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/check.h"
#include "interop/pos_embed_resize.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace curaclip::interop {

namespace {

const float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

// Keys of other versions and layouts that carry no weight.
bool is_bookkeeping(const std::string& k) {
    return k == "input_resolution" || k == "context_length" || k == "vocab_size" || k == "attn_mask" ||
           k == "text.attn_mask" || k == "text.transformer.embeddings.position_ids";
}

// open_clip's CustomTextCLIP keeps the text tower under "text.".
std::string canonical_name(std::string k) {
    if (starts_with(k, "module.")) k = k.substr(7);
    if (starts_with(k, "text.")) {
        const std::string rest = k.substr(5);
        if (starts_with(rest, "token_embedding.") || rest == "positional_embedding" || starts_with(rest, "transformer.") ||
            starts_with(rest, "ln_final.") || starts_with(rest, "text_projection"))
            return rest;
    }
    return k;
}

const HostTensor* find(const StateDict& sd, const std::string& name) {
    auto it = sd.find(name);
    return it == sd.end() ? nullptr : &it->second;
}

const HostTensor& need(const StateDict& sd, const std::string& name, size_t ndim, const std::string& path) {
    const HostTensor* t = find(sd, name);
    CC_REQUIRE(t != nullptr, path, ": no tensor '", name, "' (needed to tell the model's shape; not a CLIP ViT "
               "state dict in open_clip's or OpenAI's names?)");
    CC_REQUIRE(t->shape.size() == ndim, path, ": tensor '", name, "' has shape ", shape_str(t->shape), ", expected ",
               ndim, " dimensions");
    return *t;
}

int count_layers(const StateDict& sd, const std::string& prefix) {
    int n = 0;
    while (sd.count(prefix + ".resblocks." + std::to_string(n) + ".ln_1.weight")) ++n;
    return n;
}

}  // namespace

StateDict read_open_clip_state_dict(const std::string& path) {
    const io::SafetensorsFile f(path);
    StateDict sd;
    // q/k/v projections to pack: "<block>.attn." -> {"q_proj.weight": ..., ...}
    std::map<std::string, std::map<std::string, HostTensor>> qkv;
    for (const std::string& raw : f.names()) {
        const std::string k = canonical_name(raw);
        if (is_bookkeeping(raw) || is_bookkeeping(k)) continue;
        HostTensor t{f.tensor(raw).shape, f.read_f32(raw)};
        for (const char* p : {"q_proj.", "k_proj.", "v_proj."}) {
            const size_t at = k.find(std::string(".attn.") + p);
            if (at != std::string::npos) {
                qkv[k.substr(0, at + 6)][k.substr(at + 6)] = std::move(t);
                goto next;
            }
        }
        if (k == "text_projection.weight" && t.shape.size() == 2) {  // nn.Linear [embed, width] -> [width, embed]
            HostTensor tt{{t.shape[1], t.shape[0]}, std::vector<float>(t.values.size())};
            for (int64_t i = 0; i < t.shape[0]; ++i)
                for (int64_t j = 0; j < t.shape[1]; ++j)
                    tt.values[size_t(j * t.shape[0] + i)] = t.values[size_t(i * t.shape[1] + j)];
            sd["text_projection"] = std::move(tt);
            continue;
        }
        CC_REQUIRE(sd.emplace(k, std::move(t)).second, path, ": tensor '", raw, "' is given twice (as '", k,
                   "' under another prefix)");
    next:;
    }
    for (auto& [attn, parts] : qkv) {
        for (const char* kind : {"weight", "bias"}) {
            std::vector<const HostTensor*> three;
            for (const char* p : {"q_proj.", "k_proj.", "v_proj."}) {
                auto it = parts.find(std::string(p) + kind);
                if (it != parts.end()) three.push_back(&it->second);
            }
            if (three.empty()) continue;
            CC_REQUIRE(three.size() == 3, path, ": ", attn, "{q,k,v}_proj.", kind, ": only ", three.size(),
                       " of the three projections are present");
            HostTensor packed;
            packed.shape = three[0]->shape;
            CC_REQUIRE(!packed.shape.empty() && three[1]->shape == packed.shape && three[2]->shape == packed.shape,
                       path, ": ", attn, "{q,k,v}_proj.", kind, " have different shapes");
            packed.shape[0] *= 3;
            for (const HostTensor* t : three) packed.values.insert(packed.values.end(), t->values.begin(), t->values.end());
            sd[attn + "in_proj_" + kind] = std::move(packed);
        }
    }
    return sd;
}

ModelConfig model_config_from_state_dict(const StateDict& sd, const ModelConfig& base, const std::string& path) {
    ModelConfig c = base;
    const HostTensor& conv = need(sd, "visual.conv1.weight", 4, path);
    const HostTensor& pos = need(sd, "visual.positional_embedding", 2, path);
    const HostTensor& vproj = need(sd, "visual.proj", 2, path);
    const HostTensor& wte = need(sd, "token_embedding.weight", 2, path);
    const HostTensor& wpe = need(sd, "positional_embedding", 2, path);
    const HostTensor& tproj = need(sd, "text_projection", 2, path);
    c.vision.width = int(conv.shape[0]);
    c.channels = int(conv.shape[1]);
    c.patch_size = int(conv.shape[2]);
    CC_REQUIRE(conv.shape[2] == conv.shape[3], path, ": visual.conv1.weight ", shape_str(conv.shape),
               " has a patch that is not square");
    const int64_t grid_rows = pos.shape[0] - 1;
    const int grid = int(std::lround(std::sqrt(double(std::max<int64_t>(grid_rows, 0)))));
    CC_REQUIRE(grid_rows > 0 && int64_t(grid) * grid == grid_rows, path, ": visual.positional_embedding ",
               shape_str(pos.shape), " is not a class token plus a square grid");
    c.image_size = grid * c.patch_size;
    c.embed_dim = int(vproj.shape[1]);
    c.vocab_size = int(wte.shape[0]);
    c.text.width = int(wte.shape[1]);
    c.context_length = int(wpe.shape[0]);
    CC_REQUIRE(tproj.shape[1] == vproj.shape[1], path, ": text_projection ", shape_str(tproj.shape),
               " and visual.proj ", shape_str(vproj.shape), " map to different embedding sizes");
    c.vision.layers = count_layers(sd, "visual.transformer");
    c.text.layers = count_layers(sd, "transformer");
    for (auto [tower, prefix, t] : {std::tuple<const char*, const char*, TowerConfig*>{"vision", "visual.transformer", &c.vision},
                                    {"text", "transformer", &c.text}}) {
        const int bw = tower[0] == 'v' ? base.vision.width : base.text.width;
        const int bh = tower[0] == 'v' ? base.vision.heads : base.text.heads;
        t->heads = t->width == bw ? bh : std::max(1, t->width / 64);
        if (t->layers > 0) {
            const HostTensor& fc = need(sd, std::string(prefix) + ".resblocks.0.mlp.c_fc.weight", 2, path);
            CC_REQUIRE(fc.shape[0] % t->width == 0, path, ": ", prefix, ".resblocks.0.mlp.c_fc.weight ",
                       shape_str(fc.shape), ": hidden size not a multiple of the width ", t->width);
            t->mlp_ratio = int(fc.shape[0] / t->width);
        }
    }
    c.sigmoid_loss = sd.count("logit_bias") != 0;
    if (c.channels != base.channels) {
        if (c.channels == 3) {
            c.image_mean.assign(kClipMean, kClipMean + 3);
            c.image_std.assign(kClipStd, kClipStd + 3);
        } else {
            c.image_mean.assign(size_t(c.channels), 0.5f);
            c.image_std.assign(size_t(c.channels), 0.5f);
        }
    }
    if (c.flexi_patch > 0 && c.image_size % c.flexi_patch != 0) c.flexi_patch = 0;
    return c;
}

std::vector<std::string> shape_mismatches(const ModelConfig& f, const ModelConfig& r) {
    std::vector<std::string> out;
    auto cmp = [&](const char* key, auto a, auto b) {
        if (a != b) {
            std::ostringstream os;
            os << "model." << key << ": the file has " << a << ", the recipe " << b;
            out.push_back(os.str());
        }
    };
    cmp("vision_width", f.vision.width, r.vision.width);
    cmp("vision_layers", f.vision.layers, r.vision.layers);
    cmp("vision mlp_ratio", f.vision.mlp_ratio, r.vision.mlp_ratio);
    cmp("patch_size", f.patch_size, r.patch_size);
    cmp("channels", f.channels, r.channels);
    cmp("text_width", f.text.width, r.text.width);
    cmp("text_layers", f.text.layers, r.text.layers);
    cmp("text mlp_ratio", f.text.mlp_ratio, r.text.mlp_ratio);
    cmp("context_length", f.context_length, r.context_length);
    cmp("vocab_size", f.vocab_size, r.vocab_size);
    cmp("embed_dim", f.embed_dim, r.embed_dim);
    if (f.sigmoid_loss != r.sigmoid_loss)
        out.push_back(std::string("model.loss: the file has ") +
                      (f.sigmoid_loss ? "sigmoid (it holds logit_bias)" : "softmax (it holds no logit_bias)") +
                      ", the recipe " + (r.sigmoid_loss ? "sigmoid" : "softmax"));
    return out;
}

namespace {

// open_clip's model_cfg (open_clip_config.json's "model_cfg", or a bare model config)
// over `c`; preprocess_cfg's mean/std where given. Unsupported towers are an Error.
void apply_open_clip_json(const nlohmann::json& j, ModelConfig& c, const std::string& where) {
    const nlohmann::json& m = j.contains("model_cfg") ? j["model_cfg"] : j;
    CC_REQUIRE(m.is_object(), where, ": model_cfg is not a JSON object");
    std::vector<std::string> unsupported;
    for (const char* tower : {"vision_cfg", "text_cfg"})
        for (const char* k : {"timm_model_name", "hf_model_name"})
            if (m.contains(tower) && m[tower].contains(k) && !m[tower][k].is_null())
                unsupported.push_back(std::string(tower) + "." + k);
    if (m.contains("vision_cfg") && m["vision_cfg"].contains("layers") && !m["vision_cfg"]["layers"].is_number_integer())
        unsupported.push_back("vision_cfg.layers as a list (a ResNet)");
    CC_REQUIRE(unsupported.empty(), where, ": describes a model curaclip does not build (", join(unsupported, ", "),
               "); curaclip reads open_clip's ViT CLIP");
    auto geti = [](const nlohmann::json& o, const char* k, int& v) {
        if (o.contains(k) && o[k].is_number()) v = int(o[k].get<double>());
    };
    if (m.contains("embed_dim")) geti(m, "embed_dim", c.embed_dim);
    c.activation = m.value("quick_gelu", false) ? Activation::quick_gelu : Activation::gelu;
    c.sigmoid_loss = m.contains("init_logit_bias") && !m["init_logit_bias"].is_null();
    if (m.contains("vision_cfg")) {
        const auto& v = m["vision_cfg"];
        if (v.contains("image_size") && v["image_size"].is_array()) c.image_size = v["image_size"][0].get<int>();
        else geti(v, "image_size", c.image_size);
        geti(v, "width", c.vision.width);
        geti(v, "layers", c.vision.layers);
        geti(v, "patch_size", c.patch_size);
        const int head_width = v.value("head_width", 64);
        c.vision.heads = std::max(1, c.vision.width / std::max(1, head_width));
        if (v.contains("mlp_ratio")) c.vision.mlp_ratio = int(std::lround(v["mlp_ratio"].get<double>()));
    }
    if (m.contains("text_cfg")) {
        const auto& t = m["text_cfg"];
        geti(t, "context_length", c.context_length);
        geti(t, "vocab_size", c.vocab_size);
        geti(t, "width", c.text.width);
        geti(t, "heads", c.text.heads);
        geti(t, "layers", c.text.layers);
        if (t.contains("mlp_ratio")) c.text.mlp_ratio = int(std::lround(t["mlp_ratio"].get<double>()));
    }
    if (j.contains("preprocess_cfg")) {
        const auto& p = j["preprocess_cfg"];
        if (p.contains("mean")) c.image_mean = p["mean"].get<std::vector<float>>();
        if (p.contains("std")) c.image_std = p["std"].get<std::vector<float>>();
    }
}

// float32 values as the doubles of their shortest decimal form (0.48145466, not
// 0.48145467042922974): what a person writes in open_clip's configs, and the same float.
std::vector<double> shortest(const std::vector<float>& v) {
    std::vector<double> out;
    for (float x : v) {
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, x);
        out.push_back(std::strtod(std::string(buf, r.ptr).c_str(), nullptr));
    }
    return out;
}

}  // namespace

namespace {
// OpenAI's released state dicts (clip.load's JIT archives, converted) carry the
// bookkeeping entries input_resolution / context_length / vocab_size that open_clip's
// never do: such a file is one of OpenAI's models, and those all use QuickGELU
// (openai/CLIP model.py) and 64-wide heads.
bool is_openai_release(const io::SafetensorsFile& f) {
    return f.has("input_resolution") || (f.has("context_length") && f.has("vocab_size"));
}
}  // namespace

bool safetensors_describes_model(const std::string& path) {
    const io::SafetensorsFile f(path);
    std::error_code ec;
    return f.metadata().count("curaclip.model_config") > 0 ||
           fs::is_regular_file(fs::path(path).parent_path() / "open_clip_config.json", ec) || is_openai_release(f);
}

ModelConfig safetensors_model_config(const std::string& path) {
    const io::SafetensorsFile f(path);
    const StateDict sd = read_open_clip_state_dict(path);
    ModelConfig c = ModelConfig::preset("vit_b32");
    std::string source;
    auto meta = f.metadata().find("curaclip.model_config");
    const fs::path sibling = fs::path(path).parent_path() / "open_clip_config.json";
    std::error_code ec;
    if (meta != f.metadata().end()) {
        c = model_config_from_ini(meta->second, path + " (metadata curaclip.model_config)");
        source = "its curaclip.model_config metadata";
    } else if (fs::is_regular_file(sibling, ec)) {
        std::ifstream in(sibling);
        nlohmann::json j;
        try {
            in >> j;
        } catch (const nlohmann::json::exception& e) {
            CC_USER_FAIL(sibling.string(), ": not valid JSON (", e.what(), ")");
        }
        c = model_config_from_state_dict(sd, c, path);  // shape first, then the JSON's heads/activation/...
        apply_open_clip_json(j, c, sibling.string());
        source = sibling.string();
    } else {
        c = model_config_from_state_dict(sd, c, path);
        // OpenAI's own weights are QuickGELU; anything else: open_clip's default, GELU.
        c.activation = is_openai_release(f) ? Activation::quick_gelu : Activation::gelu;
        return c;  // nothing to check against: the tensors are the description
    }
    ModelConfig from_tensors = model_config_from_state_dict(sd, c, path);
    std::vector<std::string> bad = shape_mismatches(from_tensors, c);
    if (from_tensors.image_size != c.image_size)
        bad.push_back("model.image_size: the tensors say " + std::to_string(from_tensors.image_size) + ", " + source +
                      " " + std::to_string(c.image_size));
    CC_REQUIRE(bad.empty(), path, ": the tensors do not match the model described by ", source, ": ",
               join(bad, "; "));
    c.validate();
    return c;
}

std::string load_state_dict(const StateDict& sd, ParameterSet& params, const std::string& path, bool antialias) {
    std::vector<std::string> missing, mismatched, nonfinite, notes;
    std::set<std::string> used;
    std::vector<std::pair<Parameter*, std::vector<float>>> ready;
    for (auto& p : params.all()) {
        const HostTensor* t = find(sd, p.name);
        if (!t) {
            missing.push_back(p.name);
            continue;
        }
        used.insert(p.name);
        const std::vector<int64_t> want(p.shape.d.begin(), p.shape.d.begin() + p.shape.ndim);
        std::vector<float> v = t->values;
        bool ok = t->shape == want;
        if (!ok && want == std::vector<int64_t>{1} && t->shape.empty()) ok = true;  // 0-d scalar
        if (!ok && p.name == "visual.positional_embedding" && t->shape.size() == 2 && want.size() == 2 &&
            t->shape[1] == want[1]) {
            const int grid = int(std::lround(std::sqrt(double(want[0] - 1))));
            const int64_t old_rows = t->shape[0] - 1;
            const int old = int(std::lround(std::sqrt(double(std::max<int64_t>(old_rows, 0)))));
            if (old_rows > 0 && int64_t(old) * old == old_rows) {
                v = resize_pos_embed(t->values, int(want[1]), grid, antialias);
                notes.push_back("visual.positional_embedding resized from a " + std::to_string(old) + "x" +
                                std::to_string(old) + " to a " + std::to_string(grid) + "x" + std::to_string(grid) +
                                " grid (bicubic" + (antialias ? ", antialias" : "") + ", as open_clip's resize_pos_embed)");
                ok = true;
            }
        }
        if (!ok) {
            mismatched.push_back(p.name + " " + shape_str(t->shape) + " (the model has " + shape_str(want) + ")");
            continue;
        }
        size_t bad = 0;
        for (float x : v) bad += std::isfinite(x) ? 0 : 1;
        if (bad) nonfinite.push_back(p.name + " (" + std::to_string(bad) + " of " + std::to_string(v.size()) + " values)");
        ready.emplace_back(&p, std::move(v));
    }
    std::vector<std::string> extra;
    for (const auto& [k, t] : sd)
        if (!used.count(k)) extra.push_back(k + " " + shape_str(t.shape));
    std::vector<std::string> problems;
    if (!missing.empty()) problems.push_back(std::to_string(missing.size()) + " missing: " + join(missing, ", "));
    if (!extra.empty())
        problems.push_back(std::to_string(extra.size()) + " extra (no parameter of the model takes them): " +
                           join(extra, ", "));
    if (!mismatched.empty())
        problems.push_back(std::to_string(mismatched.size()) + " of another shape: " + join(mismatched, ", "));
    if (!nonfinite.empty())
        problems.push_back(std::to_string(nonfinite.size()) + " holding NaN or Inf: " + join(nonfinite, ", "));
    CC_REQUIRE(problems.empty(), path, ": the weights do not fit the model (", params.size(), " parameters); tensors ",
               join(problems, "; "));
    for (auto& [p, v] : ready) params.set_value(size_t(p - params.all().data()), v.data());
    return join(notes, "; ");
}

StateDict state_dict_of(ParameterSet& params) {
    StateDict sd;
    for (size_t i = 0; i < params.size(); ++i) {
        const Parameter& p = params[i];
        HostTensor t;
        if (p.name == "logit_scale" || p.name == "logit_bias") t.shape = {};
        else t.shape.assign(p.shape.d.begin(), p.shape.d.begin() + p.shape.ndim);
        const std::vector<double> v = params.values_to_host(i);  // a bf16 model's fp32 masters
        t.values.assign(v.begin(), v.end());
        sd[p.name] = std::move(t);
    }
    return sd;
}

std::string open_clip_config_json(const ModelConfig& c) {
    CC_REQUIRE(c.channels == 3, "open_clip's VisionTransformer takes RGB images (conv1 has 3 input channels); this "
               "model has ", c.channels, " channel(s), so open_clip cannot build it (train with model.channels = 3 "
               "to hand a model to open_clip)");
    nlohmann::ordered_json m;
    m["embed_dim"] = c.embed_dim;
    m["quick_gelu"] = c.activation == Activation::quick_gelu;
    if (c.sigmoid_loss) m["init_logit_bias"] = -10.0;
    m["vision_cfg"] = {{"image_size", c.image_size},
                       {"layers", c.vision.layers},
                       {"width", c.vision.width},
                       {"head_width", c.vision.width / c.vision.heads},
                       {"patch_size", c.patch_size},
                       {"mlp_ratio", double(c.vision.mlp_ratio)}};
    m["text_cfg"] = {{"context_length", c.context_length},
                     {"vocab_size", c.vocab_size},
                     {"width", c.text.width},
                     {"heads", c.text.heads},
                     {"layers", c.text.layers},
                     {"mlp_ratio", double(c.text.mlp_ratio)}};
    nlohmann::ordered_json j;
    j["model_cfg"] = m;
    j["preprocess_cfg"] = {{"size", c.image_size},
                           {"mean", shortest(c.image_mean)},
                           {"std", shortest(c.image_std)},
                           {"interpolation", "bicubic"},
                           {"resize_mode", "shortest"}};
    return j.dump(2) + "\n";
}

void write_open_clip_safetensors(const std::string& path, ParameterSet& params, const ModelConfig& cfg) {
    const StateDict sd = state_dict_of(params);
    std::vector<std::string> bad;
    for (const auto& [k, t] : sd)
        for (float x : t.values)
            if (!std::isfinite(x)) {
                bad.push_back(k);
                break;
            }
    CC_REQUIRE(bad.empty(), path, " not written: the model holds NaN or Inf in ", join(bad, ", "));
    std::vector<io::SafetensorsOut> out;
    for (const auto& [k, t] : sd) out.push_back({k, t.shape, t.values.data()});
    io::write_safetensors(path, out, {{"format", "pt"}, {"curaclip.model_config", model_config_to_ini(cfg)}});
}

}  // namespace curaclip::interop
