// Bucketed gradient all-reduce (src/train/grad_buckets.h) against the reference path
// (one all-reduce per parameter after the backward), on 1, 2 and 4 ranks over MPI:
// the same bucket schedule the GPU runs over NCCL, here with allreduce_sum_start =
// a plain MPI all-reduce at the moment a bucket is started.
//
// Each rank trains on its own batch, so the summed gradients depend on every rank. A
// bucket started before its gradients are final (a wrong GradsReady announcement)
// would reduce a partial sum and then add local terms on top: the comparison catches
// it, for the plain and the multi-resolution (FlexiViT) backward, both losses.
//
// Exactness: with 2 ranks each summed element is a + b, computed once by its owner,
// whatever range the all-reduce covers, so bucketed == reference bit for bit. With 4
// ranks the order in which MPI combines the four terms may depend on the message size
// (Open MPI picks algorithms by size), so there the check is 1e-6 relative; whether it
// came out bitwise is printed.
//
// No ASSERT_* before a collective (a rank leaving early would hang the others).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../unit/model_fixtures.h"
#include "backend/registry.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "mpi/communicator.h"
#include "train/train_step.h"

namespace curaclip {
namespace {

// Gradients of every parameter after one compute_gradients (float64 host copies, in order).
std::vector<std::vector<double>> gradients(const ModelConfig& cfg, size_t bucket_bytes, int passes,
                                           const Communicator& world, size_t* n_buckets) {
    auto be = make_backend("cpu");
    const int64_t B = 4;  // local batch
    ClipModel model(*be, cfg, B);
    model.init_weights(5);
    model.set_batch(B);
    auto coll = make_mpi_collectives(world, *be);
    ContrastiveLoss loss(*be, cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax, B, cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll, bucket_bytes);
    const testing::Batch batch = testing::random_batch(cfg, B, 100 + uint64_t(world.rank()));
    // Pass 1 records the order (all buckets at the end); pass 2 starts them during the backward.
    for (int p = 0; p < passes; ++p) step.compute_gradients(batch.images.data(), batch.tokens.data());
    *n_buckets = step.grad_reducer() ? step.grad_reducer()->buckets().size() : 0;
    std::vector<std::vector<double>> g;
    for (size_t i = 0; i < model.params().size(); ++i) g.push_back(model.params().grads_to_host(i));
    return g;
}

void compare(const ModelConfig& cfg, const char* what) {
    const Communicator world = Communicator::world();
    size_t nb = 0;
    const auto ref = gradients(cfg, 0, 2, world, &nb);
    for (size_t cap : {size_t(1), size_t(4096), kDefaultGradBucketBytes}) {
        for (int passes : {1, 2}) {
            const auto got = gradients(cfg, cap, passes, world, &nb);
            EXPECT_EQ(got.size(), ref.size());
            bool bitwise = true;
            double worst = 0.0;
            for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
                double scale = 0.0;
                for (double v : ref[i]) scale = std::max(scale, std::abs(v));
                for (size_t k = 0; k < ref[i].size(); ++k) {
                    bitwise &= std::memcmp(&got[i][k], &ref[i][k], sizeof(double)) == 0;
                    worst = std::max(worst, std::abs(got[i][k] - ref[i][k]) / std::max(scale, 1e-30));
                }
            }
            if (world.size() <= 2) {
                EXPECT_TRUE(bitwise) << what << ": cap " << cap << ", pass " << passes;
            }
            EXPECT_LE(worst, 1e-6) << what << ": cap " << cap << ", pass " << passes;
            if (world.size() > 1) {
                EXPECT_GT(nb, 0u);
            }
            if (world.rank() == 0 && passes == 2)
                std::printf("[grad buckets] %s, %d ranks, cap %zu B: %zu buckets, %s (max rel diff %.1e)\n", what,
                            world.size(), cap, nb, bitwise ? "bitwise equal" : "not bitwise", worst);
        }
    }
}

TEST(GradBuckets, SameGradientsAsOneAllReducePerParameter) {
    omp_set_num_threads(1);
    compare(testing::small_model_config(8, 4, 3, false), "softmax");
    compare(testing::small_model_config(8, 4, 1, true), "sigmoid");
}

TEST(GradBuckets, SameGradientsWithAMultiResolutionBackward) {
    omp_set_num_threads(1);
    compare(testing::small_model_config(8, 2, 3, false, 4), "flexi softmax");
}

}  // namespace
}  // namespace curaclip
