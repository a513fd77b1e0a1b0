#include "model/clip_model.h"

#include <algorithm>
#include <sstream>

namespace curaclip {

ClipModel::ClipModel(Backend& be, const ModelConfig& cfg, int64_t max_batch)
    : be_(&be), config_(cfg), params_(be), max_batch_(max_batch) {
    cfg.validate();
    CC_CHECK(max_batch > 0, "batch size must be positive, got ", max_batch);
    vision_.declare(params_, cfg);
    text_.declare(params_, cfg);
    logit_scale_ = params_.declare("logit_scale", {1}, false);
    if (cfg.sigmoid_loss) logit_bias_ = params_.declare("logit_bias", {1}, false);
    params_.finalize();

    // Memory for the largest layout the config allows (batch max_batch at every resolution).
    plan_bytes_[0] = activation_bytes_for(max_batch, Resolution::full);
    if (cfg.flexi()) {
        plan_bytes_[1] = activation_bytes_for(max_batch, Resolution::multires);
        plan_bytes_[2] = activation_bytes_for(max_batch, Resolution::low);
    }
    const size_t bytes = std::max({plan_bytes_[0], plan_bytes_[1], plan_bytes_[2]});
    activations_ = Arena(be, bytes, "activations");
    layout(activations_, max_batch, Resolution::full);
}

const char* resolution_name(ClipModel::Resolution r) {
    switch (r) {
        case ClipModel::Resolution::full: return "full";
        case ClipModel::Resolution::multires: return "multires";
        case ClipModel::Resolution::low: return "low";
    }
    return "?";
}

std::vector<VisionPassSpec> ClipModel::vision_plan(int64_t b, Resolution r) const {
    CC_CHECK(r == Resolution::full || config_.flexi(), "resolution '", resolution_name(r),
             "' needs a multi-resolution model (model.flexi_patch > 0)");
    switch (r) {
        case Resolution::full: return {{config_.patch_size, b}};
        case Resolution::low: return {{config_.flexi_patch, b}};
        case Resolution::multires: {
            const int64_t k = config_.flexi_rows(b);
            return {{config_.flexi_patch, k}, {config_.patch_size, b - k}};
        }
    }
    CC_FAIL("unknown resolution");
}

int64_t ClipModel::low_rows() const {
    if (!config_.flexi() || config_.flexi_patch == config_.patch_size) return 0;
    int64_t n = 0;
    for (const VisionPassSpec& s : vision_plan(batch_, resolution_))
        if (s.patch == config_.flexi_patch) n += s.rows;
    return n;
}

size_t ClipModel::activation_bytes_for(int64_t b, Resolution r) {
    // A measuring layout overwrites the towers' tensors: lay out the current one again after.
    const bool live = activations_.capacity() > 0;
    Arena measure;
    layout(measure, b, r);
    const size_t bytes = measure.used();
    if (live) layout(activations_, batch_, resolution_);
    return bytes;
}

void ClipModel::layout(Arena& arena, int64_t b, Resolution r) {
    const std::vector<VisionPassSpec> plan = vision_plan(b, r);
    arena.reset();
    vision_.layout(arena, be_->dtype(), plan);
    text_.layout(arena, be_->dtype(), b);
    if (!arena.measuring()) {
        batch_ = b;
        resolution_ = r;
    }
}

void ClipModel::set_batch(int64_t b, Resolution r) {
    CC_CHECK(b > 0 && b <= max_batch_, "batch ", b, " outside [1, ", max_batch_, "] this model was laid out for");
    if (b == batch_ && r == resolution_) return;
    Arena measure;
    layout(measure, b, r);  // leaves null tensors behind: always lay out the real arena next
    if (measure.used() > activations_.capacity()) {
        layout(activations_, batch_, resolution_);
        CC_FAIL("a batch of ", b, " at resolution '", resolution_name(r), "' needs ", format_bytes(measure.used()),
                " of activations but the model was sized for ", format_bytes(activations_.capacity()));
    }
    layout(activations_, b, r);
}

void ClipModel::init_weights(uint64_t seed) { init_clip_weights(params_, config_, seed); }

void ClipModel::set_inputs(const uint8_t* images, const int32_t* tokens) {
    if (images) vision_.set_images(*be_, images);
    if (tokens) text_.set_tokens(*be_, tokens);
}

void ClipModel::forward_image() { vision_.forward(*be_, params_); }
void ClipModel::forward_text() { text_.forward(*be_, params_); }

void ClipModel::zero_embedding_grads() {
    be_->fill(d_image_embeddings(), 0.0f);
    be_->fill(d_text_embeddings(), 0.0f);
}

void ClipModel::backward(const GradsReady& ready) {
    if (ready) ready(logit_scale_, config_.sigmoid_loss ? logit_bias_ - logit_scale_ + 1 : 1);
    vision_.backward(*be_, params_, ready);
    text_.backward(*be_, params_, ready);
}

std::string ClipModel::memory_report() const {
    std::ostringstream os;
    os << "model: " << config_.summary() << "\n"
       << "parameters: " << params_.count() << " in " << params_.size() << " tensors\n"
       << "arenas: parameters " << format_bytes(params_.value_bytes()) << ", gradients "
       << format_bytes(params_.grad_bytes()) << ", optimizer " << format_bytes(params_.optimizer_bytes());
    if (params_.has_masters()) os << ", fp32 masters " << format_bytes(params_.master_bytes());
    os << ", activations " << format_bytes(activations_.capacity()) << " (batch " << max_batch_ << ")";
    if (config_.flexi()) {
        const ModelConfig& c = config_;
        const int64_t k = c.flexi_rows(max_batch_);
        os << "\nflexi activations at batch " << max_batch_ << ": full (patch " << c.patch_size << ", "
           << c.vision_tokens() << " tokens) " << format_bytes(plan_bytes_[0]) << ", multires (" << k
           << " rows at patch " << c.flexi_patch << " / " << c.vision_tokens_at(c.flexi_patch) << " tokens + "
           << (max_batch_ - k) << " at patch " << c.patch_size << ") " << format_bytes(plan_bytes_[1])
           << ", low (all at patch " << c.flexi_patch << ") " << format_bytes(plan_bytes_[2])
           << "\nflexi compute: image tower FLOP ratio low/full " << c.flexi_image_flop_ratio()
           << ", pair forward FLOP ratio A = " << c.flexi_flop_ratio() << ", multires train FLOPs/pair "
           << c.train_flops_per_pair(max_batch_) / (3.0 * c.forward_flops_per_pair()) << " x IID";
    }
    return os.str();
}

}  // namespace curaclip
