// Task texts through the clustering sentence encoder (see encoder_routing.h).
#include "mode/encoder_routing.h"

#include <cmath>

#include "core/check.h"
#include "eval/templates.h"
#include "io/dataset_reader.h"
#include "mode/clustering.h"

namespace curaclip::mode {

void check_routing_encoder(const Assignment& a, const encoder::BertEncoder& enc) {
    CC_REQUIRE(!a.encoder_id.empty(), "routing encoder ", enc.config().dir, ": the centers of ", a.path,
               " were not made by a sentence encoder (they come from ",
               a.checkpoint.empty() ? std::string("unknown embeddings") : "checkpoint " + a.checkpoint,
               "); route with that model (--routing-checkpoint), not --routing-encoder");
    CC_REQUIRE(a.encoder_id == enc.id(), "routing encoder mismatch: the centers of ", a.path, " were made by '",
               a.encoder_id, "' (", a.encoder, ") but ", enc.config().dir, " is '", enc.id(),
               "'; class names and queries must be embedded by the encoder that embedded the captions");
    CC_REQUIRE(enc.dim() == a.dim, "routing encoder ", enc.config().dir, " embeds in ", enc.dim(),
               " dimensions but the fine centers of ", a.path, " have ", a.dim);
}

std::vector<float> encoder_class_embeddings(encoder::BertEncoder& enc, const std::vector<std::string>& classnames,
                                            const std::vector<std::string>& templates) {
    CC_CHECK(!templates.empty(), "encoder_class_embeddings: no templates");
    const int64_t K = int64_t(classnames.size()), T = int64_t(templates.size()), D = enc.dim();
    std::vector<std::string> prompts;
    prompts.reserve(size_t(K * T));
    for (const auto& c : classnames)
        for (const auto& t : templates) prompts.push_back(apply_template(t, c));
    const std::vector<float> e = enc.embed(prompts);
    std::vector<float> out(static_cast<size_t>(K * D));
    for (int64_t k = 0; k < K; ++k) {
        std::vector<double> acc(static_cast<size_t>(D), 0.0);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += double(e[size_t((k * T + t) * D + d)]);
        double n = 0;
        for (double v : acc) n += v * v;
        const double inv = 1.0 / std::max(std::sqrt(n), 1e-12);
        for (int64_t d = 0; d < D; ++d) out[size_t(k * D + d)] = float(acc[size_t(d)] * inv);
    }
    return out;
}

std::vector<float> encoder_caption_embeddings(encoder::BertEncoder& enc, const std::string& data_path,
                                              const Communicator& comm) {
    const io::DatasetReader reader(data_path, io::DatasetExpect{});
    const int64_t N = reader.size(), D = enc.dim();
    const auto [begin, end] = block_of(N, comm.rank(), comm.size());
    std::vector<float> all(static_cast<size_t>(N * D), 0.0f);
    if (end > begin) {
        const std::vector<float> mine = enc.embed(reader.read_captions(begin, end - begin));
        std::copy(mine.begin(), mine.end(), all.begin() + begin * D);
    }
    // Disjoint blocks, zeros elsewhere: the sum is exact and the same on every rank.
    comm.allreduce_sum(all.data(), all.size());
    return all;
}

}  // namespace curaclip::mode
