#include "train/jest_step.h"

#include "jest/sample_exchange.h"

namespace curaclip {

JestTrainStep::JestTrainStep(ClipModel& model, TrainStep& step, jest::JestSelector& selector,
                             jest::ReferenceSource* reference, const Communicator& comm, bool score_low_res)
    : model_(model), step_(step), selector_(selector), reference_(reference), comm_(comm), low_res_(score_low_res) {
    CC_REQUIRE(!low_res_ || model.config().flexi(), "jest.score_resolution = low needs model.flexi_patch > 0");
    CC_REQUIRE(reference_ || selector.config().score == jest::ScoreKind::hard_learner,
               "jest.score = ", jest::score_kind_name(selector.config().score),
               " needs a reference model (jest.reference)");
    Backend& be = model.backend();
    const DType dt = model.logit_scale().value.dtype;
    scratch_ = Arena(be, 2 * Arena::kAlign + 2 * dtype_size(dt), "JEST logit-scale caps");
    learner_cap_ = scratch_.alloc({1}, dt);
    reference_cap_ = scratch_.alloc({1}, reference_ && !reference_->logit_scale().empty()
                                              ? reference_->logit_scale().dtype : dt);
}

JestStepResult JestTrainStep::run(const io::Batch& super, AdamW& opt, uint64_t step) {
    const int64_t share = super.size, B = selector_.super_batch(), b = selector_.selected_batch();
    // 1. Score: learner forward without gradient on this rank's share.
    model_.set_batch(share, low_res_ ? ClipModel::Resolution::low : ClipModel::Resolution::full);
    model_.set_inputs(super.images.data(), super.tokens.data());
    model_.forward();
    if (reference_) reference_->embed(super);
    Parameter* lb = model_.logit_bias();
    const Tensor none{};
    Backend& be = model_.backend();
    const Tensor learner_scale = capped_logit_scale(be, model_.logit_scale().value, learner_cap_);
    const Tensor reference_scale = reference_ && !reference_->logit_scale().empty()
                                       ? capped_logit_scale(be, reference_->logit_scale(), reference_cap_)
                                       : none;
    const jest::Selection sel = selector_.select(
        model_.image_embeddings(), model_.text_embeddings(), reference_ ? reference_->image_embeddings() : none,
        reference_ ? reference_->text_embeddings() : none, learner_scale, lb ? lb->value : none,
        reference_scale, reference_ ? reference_->logit_bias() : none, step);
    // 2. Move the selected examples to the ranks that train on them.
    const io::Batch mine = exchange_selected(super, sel.indices, B, comm_);
    // 3. Train on them.
    JestStepResult r;
    r.train = step_.run(mine.images.data(), mine.tokens.data(), opt);
    r.batch_score = sel.mean_self_score;
    r.superbatch_score = sel.superbatch_self_score;
    double counts[2] = {0.0, double(mine.corrupted.size())};
    for (uint8_t c : mine.corrupted) counts[0] += c;
    comm_.allreduce_sum(counts, 2);
    r.corrupted_share = counts[1] > 0 ? counts[0] / double(b) : -1.0;
    const ModelConfig& c = model_.config();
    const double score_flops = low_res_ ? c.image_forward_flops(c.flexi_patch) + c.text_forward_flops()
                                        : c.forward_flops_per_pair();
    r.flops = double(b) * step_.train_flops_per_pair() + double(B) * score_flops +
              double(B) * (reference_ ? reference_->flops_per_example() : 0.0);
    return r;
}

}  // namespace curaclip
