// The Rand-n baseline of the MoDE benchmark: a copy of a cluster side file whose
// fine clusters are given to the experts at random (each expert the same number
// of fine clusters, +-1), instead of by the coarse k-means. Same fine centers,
// same granularity; only the semantic grouping into experts is destroyed.
//
//   mode_random_split IN_ASSIGN.h5 OUT_ASSIGN.h5 [seed]
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/philox.h"
#include "core/sampling.h"
#include "io/hdf5_file.h"
#include "mode/experts.h"

int main(int argc, char** argv) {
    using namespace curaclip;
    if (argc < 3) {
        std::fprintf(stderr, "usage: mode_random_split IN_ASSIGN.h5 OUT_ASSIGN.h5 [seed]\n");
        return 2;
    }
    try {
        const std::string in = argv[1], out = argv[2];
        const uint64_t seed = argc > 3 ? std::stoull(argv[3]) : 0;
        CC_CHECK(!std::filesystem::exists(out), out, " exists; refusing to overwrite it");
        const mode::Assignment a = mode::read_assignment(in, /*with_rows=*/false, "IN_ASSIGN");
        const H5File src(in, H5File::Mode::read);
        const std::vector<int32_t> fine = src.read_i32("/assign/fine");
        // A random balanced map: shuffle the fine centers, deal them round-robin.
        std::vector<int32_t> perm(size_t(a.m));
        for (int64_t s = 0; s < a.m; ++s) perm[size_t(s)] = int32_t(s);
        Philox rng(seed, RngPurpose::test, 77);
        fisher_yates_shuffle(rng, perm);
        std::vector<int32_t> f2e(size_t(a.m));
        for (int64_t i = 0; i < a.m; ++i) f2e[size_t(perm[size_t(i)])] = int32_t(i % a.n_experts);
        std::vector<int32_t> expert(fine.size());
        std::vector<int64_t> sizes(size_t(a.n_experts), 0);
        for (size_t i = 0; i < fine.size(); ++i) ++sizes[size_t(expert[i] = f2e[size_t(fine[i])])];
        {
            H5File f(out + ".tmp", H5File::Mode::create_exclusive);
            f.write_i32("/assign/fine", fine.data(), {int64_t(fine.size())});
            f.write_i32("/assign/expert", expert.data(), {int64_t(expert.size())});
            f.write_f32("/centers/fine", a.fine_centers.data(), {a.m, a.dim});
            f.write_i32("/centers/fine_to_expert", f2e.data(), {a.m});
            f.set_attr("/", "format_version", int64_t(1));
            f.set_attr("/", "kind", std::string("mode_clusters"));
            f.set_attr("/", "m", a.m);
            f.set_attr("/", "n", a.n_experts);
            f.set_attr("/", "n_examples", int64_t(fine.size()));
            f.set_attr("/", "dim", a.dim);
            f.set_attr("/", "source_dataset", a.source_dataset);
            // Who made the embeddings and of which data: routing and train-experts check
            // these, so the random split is used exactly like the file it comes from.
            if (!a.checkpoint.empty()) f.set_attr("/", "checkpoint", a.checkpoint);
            if (!a.encoder.empty()) f.set_attr("/", "encoder", a.encoder);
            if (!a.encoder_id.empty()) f.set_attr("/", "encoder_id", a.encoder_id);
            if (!a.source_fingerprint.empty()) f.set_attr("/", "source_fingerprint", a.source_fingerprint);
            f.set_attr("/", "random_split_of", in);
            f.set_attr("/", "random_split_seed", int64_t(seed));
        }
        std::filesystem::rename(out + ".tmp", out);
        std::printf("wrote %s: %lld fine clusters dealt at random to %lld experts; sizes", out.c_str(), (long long)a.m,
                    (long long)a.n_experts);
        for (int64_t s : sizes) std::printf(" %lld", (long long)s);
        std::printf("\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mode_random_split: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
