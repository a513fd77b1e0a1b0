// open_clip's initialization of CLIP (CLIP.initialize_parameters / the
// VisionTransformer constructor), applied to both towers alike:
//   token_embedding N(0, 0.02), text positional_embedding N(0, 0.01),
//   class/positional embedding and proj of the ViT N(0, width^-1/2),
//   attn.in_proj N(0, width^-1/2), out_proj and mlp.c_proj N(0, width^-1/2 (2L)^-1/2),
//   mlp.c_fc N(0, (2 width)^-1/2), text_projection N(0, width^-1/2),
//   conv1 kaiming-uniform (bound 1/sqrt(fan_in)), biases 0, layer-norm gains 1,
//   logit_scale ln(1/0.07) (SigLIP: ln 10 and logit_bias -10).
// open_clip leaves the ViT blocks at PyTorch's module defaults; we use the text
// tower's scaled init for both, which trains at least as well and is one rule.
#include <cmath>
#include <string>
#include <vector>

#include "core/philox.h"
#include "model/clip_model.h"

namespace curaclip {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

void init_clip_weights(ParameterSet& ps, const ModelConfig& cfg, uint64_t seed) {
    for (size_t i = 0; i < ps.size(); ++i) {
        Parameter& p = ps[i];
        const std::string& n = p.name;
        const bool visual = starts_with(n, "visual.");
        const TowerConfig& tower = visual ? cfg.vision : cfg.text;
        const double width = tower.width;
        const double attn_std = std::pow(width, -0.5);
        const double proj_std = attn_std * std::pow(2.0 * std::max(tower.layers, 1), -0.5);
        const double fc_std = std::pow(2.0 * width, -0.5);

        enum { kNormal, kUniform, kConst } kind = kNormal;
        double scale = 0.0;  // std (normal), bound (uniform) or the constant
        if (n == "logit_scale") { kind = kConst; scale = cfg.sigmoid_loss ? std::log(10.0) : std::log(1.0 / 0.07); }
        else if (n == "logit_bias") { kind = kConst; scale = -10.0; }
        else if (n == "visual.conv1.weight") { kind = kUniform; scale = 1.0 / std::sqrt(double(p.shape.numel() / p.shape[0])); }
        else if (n == "token_embedding.weight") scale = 0.02;
        else if (n == "positional_embedding") scale = 0.01;
        else if (n == "visual.class_embedding" || n == "visual.positional_embedding" || n == "visual.proj" ||
                 n == "text_projection") scale = attn_std;
        else if (ends_with(n, "attn.in_proj_weight")) scale = attn_std;
        else if (ends_with(n, "attn.out_proj.weight") || ends_with(n, "mlp.c_proj.weight")) scale = proj_std;
        else if (ends_with(n, "mlp.c_fc.weight")) scale = fc_std;
        else if (ends_with(n, ".weight") && p.shape.ndim == 1) { kind = kConst; scale = 1.0; }  // LN gains
        else if (ends_with(n, "bias")) { kind = kConst; scale = 0.0; }
        else CC_FAIL("no initialization rule for parameter '", n, "'");

        std::vector<double> host(size_t(p.shape.numel()));
        Philox rng(seed, RngPurpose::init, /*step=*/i);
        for (double& v : host) {
            if (kind == kConst) v = scale;
            else if (kind == kUniform) v = (2.0 * rng.uniform() - 1.0) * scale;
            else v = rng.normal() * scale;
        }
        ps.set_value(i, host.data());
    }
}

}  // namespace curaclip
