// The reference model's side of JEST scoring (docs/jest.md §One JEST step): normalized image and
// text embeddings of this rank's super-batch share, plus the reference's logit
// scale (and bias), either
//  * cached: rows of /image_emb and /caption_emb [N, D] of a side file made by
//    `curaclip embed --what both` with the reference checkpoint (scoring then needs
//    only the learner's forward), looked up by the examples' dataset indices; or
//  * live: a forward pass of the reference checkpoint on the same examples.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/loader.h"
#include "model/clip_model.h"

namespace curaclip::jest {

class ReferenceSource {
public:
    // checkpoint: the reference model (its scale/bias are always read from it);
    // cache: the embeddings side file, or "" for live forward passes.
    // local_batch: this rank's super-batch share; dataset_size checks the cache.
    // The reference embeds the learner's data: its image size, channels and context
    // must be the learner's, and its vocabulary must hold every id of the training
    // tokenizer (tokenizer_vocab ids); a non-finite scale, bias or cached embedding
    // is refused. Errors name the checkpoint or cache file.
    ReferenceSource(Backend& be, const std::string& checkpoint, const std::string& cache, int64_t local_batch,
                    int64_t dataset_size, const ModelConfig& learner, int tokenizer_vocab);

    // Fills embeddings() for the rows of `super` (this rank's share).
    void embed(const io::Batch& super);
    Tensor image_embeddings() const { return img_; }
    Tensor text_embeddings() const { return txt_; }
    Tensor logit_scale() const { return scale_; }
    Tensor logit_bias() const { return bias_; }  // empty for a softmax-loss reference
    bool live() const { return model_ != nullptr; }
    int64_t embed_dim() const { return dim_; }
    // Forward FLOPs per example spent here (0 with the cache).
    double flops_per_example() const;

private:
    Backend& be_;
    std::unique_ptr<ClipModel> model_;  // live mode
    std::vector<float> cache_img_, cache_txt_;  // cached mode, [N, D]
    int64_t dim_ = 0, local_batch_ = 0;
    Arena arena_;
    Tensor img_, txt_, scale_, bias_;
};

}  // namespace curaclip::jest
