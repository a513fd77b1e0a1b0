// curaclip embed --checkpoint RUN|FILE --data DS.h5 --out EMB.h5 [--what captions|images]
// curaclip embed --encoder HF_FOLDER --data DS.h5 --out EMB.h5 [--pooling mean|cls|pooler]
//
// With --encoder, the captions (/captions, the raw text) go through a BERT-family
// sentence encoder (src/encoder/, as MoDE clusters with SimCSE) instead of a CLIP
// text tower; the side file records the encoder (attributes encoder = the folder,
// encoder_id = BertEncoder::id()), which `cluster` carries on and MoDE routing checks.
//
// L2-normalized embeddings of every example of a dataset by a checkpoint's text
// tower (captions, from the dataset's /tokens) or image tower (images), for MoDE
// clustering (docs/mode.md) and JEST's cached reference embeddings (docs/jest.md). Each rank
// embeds its contiguous block of rows; the ranks write their rows in turn into a
// NEW side file (/caption_emb or /image_emb [N, D]); the dataset is never touched.
// Token rows are checked before the first forward pass (ids in the model's
// vocabulary, an end of text where the file names its id), and nothing is written
// when any embedding is not finite (the Error names the checkpoint, the dataset
// and the first rows).
#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "encoder/bert_encoder.h"
#include "eval/embed.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "io/loader.h"
#include "mode/clustering.h"
#include "mode/side_file.h"
#include "model/clip_model.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
std::string command_line(const char* name, int argc, char** argv) {
    std::string s = std::string("curaclip ") + name;
    for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
    return s;
}

// Collective: Error on every rank (before anything is written) when any rank's
// rows [begin, begin + rows) of emb [rows, D] hold a NaN or Inf, naming the first
// bad rows of the whole dataset.
void require_finite_embeddings(const std::vector<float>& emb, int64_t begin, int64_t D, const char* what,
                               const std::string& ckpt, const std::string& data, const Communicator& world) {
    constexpr int kShown = 5;
    const int64_t none = std::numeric_limits<int64_t>::max();
    std::vector<int64_t> mine(kShown, none);
    int64_t count = 0;
    const int64_t rows = D > 0 ? int64_t(emb.size()) / D : 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < D; ++d)
            if (!std::isfinite(emb[size_t(r * D + d)])) {
                if (count < kShown) mine[size_t(count)] = begin + r;
                ++count;
                break;
            }
    std::vector<int64_t> all(size_t(kShown) * size_t(world.size()));
    world.allgather(mine.data(), all.data(), size_t(kShown));
    world.allreduce_sum(&count, 1);
    if (count == 0) return;
    std::sort(all.begin(), all.end());
    std::string list;
    for (int k = 0; k < kShown && all[size_t(k)] != none; ++k) list += (k ? ", " : "") + std::to_string(all[size_t(k)]);
    if (count > kShown) list += " and " + std::to_string(count - kShown) + " more";
    CC_USER_FAIL(ckpt, " on ", data, ": the ", what, " embeddings of ", count == 1 ? "row " : "rows ",
                 list, " are not finite (NaN or Inf): the model's weights or activations overflowed; nothing was "
                 "written");
}

// embed --encoder: each rank its block of /captions through the sentence encoder, read
// and embedded in chunks of 8 batches (so the progress line moves), one side file.
int embed_with_encoder(const std::string& enc_dir, const std::string& pooling, const std::string& data,
                       const std::string& out, int64_t batch, const std::string& backend, const std::string& cmd,
                       const Communicator& world) {
    const io::DatasetReader reader(data, io::DatasetExpect{});
    const std::string fingerprint = io::dataset_fingerprint(reader);
    auto be = make_backend(backend);
    encoder::BertEncoder enc(*be, enc_dir, batch, pooling);
    const int64_t N = reader.size(), D = enc.dim();
    const auto [begin, end] = mode::block_of(N, world.rank(), world.size());
    if (world.rank() == 0)
        std::printf("embed captions: %lld rows of %s by sentence encoder %s (%s) on %d rank(s)\n", (long long)N,
                    data.c_str(), enc.config().dir.c_str(), enc.id().c_str(), world.size());
    std::vector<float> emb(static_cast<size_t>((end - begin) * D));
    const int64_t chunk = 8 * batch;
    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    for (int64_t s = begin; s < end; s += chunk) {
        const int64_t c = std::min(chunk, end - s);
        const std::vector<float> e = enc.embed(reader.read_captions(s, c));
        std::copy(e.begin(), e.end(), emb.begin() + (s - begin) * D);
        const auto now = std::chrono::steady_clock::now();
        if (world.rank() == 0 && (std::chrono::duration<double>(now - last).count() >= 10 || s + c == end)) {
            last = now;
            const double sec = std::chrono::duration<double>(now - t0).count();
            std::printf("embed captions: rank 0 %lld/%lld rows, %.0f rows/s\n", (long long)(s + c - begin),
                        (long long)(end - begin), double(s + c - begin) / std::max(sec, 1e-9));
            std::fflush(stdout);
        }
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    require_finite_embeddings(emb, begin, D, "caption", "encoder " + enc.config().dir, data, world);
    const std::vector<mode::RowBlock> blocks{
        mode::RowBlock{"/caption_emb", DType::f32, N, D, begin, end - begin, emb.data()}};
    const std::string src = fs::absolute(data).string();
    mode::write_side_file(world, out, [&](H5File& f) {
        f.set_attr("/", "format_version", int64_t(1));
        f.set_attr("/", "kind", std::string("embeddings"));
        f.set_attr("/", "what", std::string("captions"));
        f.set_attr("/", "source_dataset", src);
        f.set_attr("/", "source_fingerprint", fingerprint);
        f.set_attr("/", "n", N);
        f.set_attr("/", "dim", D);
        f.set_attr("/", "encoder", enc.config().dir);
        f.set_attr("/", "encoder_id", enc.id());
        f.set_attr("/", "encoder_pooling", std::string(encoder::pooling_name(enc.pooling())));
        f.set_attr("/", "normalized", int64_t(1));
        f.set_attr("/", "creation_command", cmd);
    }, blocks);
    // The slowest rank's time is the job's: captions/s of the whole job.
    double slowest = sec;
    world.allreduce_max(&slowest, 1);
    if (world.rank() == 0)
        std::printf("wrote %s: caption embeddings [%lld, %lld] of %s; %.1f s embedding, %.1f captions/s over %d rank(s)\n",
                    out.c_str(), (long long)N, (long long)D, data.c_str(), slowest, double(N) / std::max(slowest, 1e-9),
                    world.size());
    return 0;
}
}  // namespace

int cmd_embed(int argc, char** argv, const Communicator& world) {
    po::options_description desc("Embedding");
    desc.add_options()
        ("checkpoint", po::value<std::string>()->default_value(""), "checkpoint file, or a run folder (its latest checkpoint)")
        ("encoder", po::value<std::string>()->default_value(""),
         "instead of --checkpoint: a Hugging Face BERT-family sentence encoder folder (config.json, model.safetensors, "
         "vocab.txt; e.g. .cache/models/all-MiniLM-L6-v2) that embeds the captions' text")
        ("pooling", po::value<std::string>()->default_value(""),
         "with --encoder: mean, cls or pooler (default: the folder's 1_Pooling/config.json, else mean)")
        ("data", po::value<std::string>()->required(), "dataset (HDF5) whose examples are embedded")
        ("out", po::value<std::string>()->required(), "new HDF5 side file to write (never overwritten)")
        ("what", po::value<std::string>()->default_value("captions"),
         "captions (text tower -> /caption_emb), images (image tower -> /image_emb), or both (JEST's reference cache)")
        ("batch", po::value<int64_t>()->default_value(256), "examples per forward pass")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda");
    const ParsedOptions p = parse_options(argc, argv, desc,
        "usage: [mpirun -n P] curaclip embed --checkpoint runs/seed --data data/train.h5 --out data/train_emb.h5\n"
        "       [mpirun -n P] curaclip embed --encoder .cache/models/all-MiniLM-L6-v2 --data data/train.h5 --out data/train_emb.h5\n"
        "L2-normalized caption (or image) embeddings of every example, for MoDE clustering.");
    if (p.help) return 0;
    std::string ckpt = p.vm["checkpoint"].as<std::string>();
    const std::string enc_dir = p.vm["encoder"].as<std::string>();
    CC_REQUIRE(ckpt.empty() != enc_dir.empty(), "give either --checkpoint (a CLIP model's towers) or --encoder "
               "(a sentence encoder folder for the captions)");
    if (!enc_dir.empty()) {
        const std::string data = p.vm["data"].as<std::string>();
        const std::string out = p.vm["out"].as<std::string>();
        const int64_t batch = p.vm["batch"].as<int64_t>();
        CC_REQUIRE(p.vm["what"].as<std::string>() == "captions", "--encoder embeds captions only, not --what ",
                   p.vm["what"].as<std::string>());
        CC_REQUIRE(batch > 0, "--batch must be positive, got ", batch);
        CC_REQUIRE(fs::exists(data), "--data ", data, " does not exist");
        CC_REQUIRE(fs::absolute(out) != fs::absolute(data), "--out ", out,
                   " is the dataset itself; embeddings go to a new side file");
        mode::check_new_output(out, "--out");
        return embed_with_encoder(enc_dir, p.vm["pooling"].as<std::string>(), data, out, batch,
                                  p.vm["backend"].as<std::string>(), command_line("embed", argc, argv), world);
    }
    CC_REQUIRE(p.vm["pooling"].as<std::string>().empty(), "--pooling belongs to --encoder");
    CC_REQUIRE(fs::exists(ckpt), "--checkpoint ", ckpt, " does not exist");
    if (fs::is_directory(ckpt)) ckpt = resolve_checkpoint(ckpt, "latest");
    const std::string data = p.vm["data"].as<std::string>();
    const std::string out = p.vm["out"].as<std::string>();
    const std::string what = p.vm["what"].as<std::string>();
    const int64_t batch = p.vm["batch"].as<int64_t>();
    CC_REQUIRE(what == "captions" || what == "images" || what == "both",
               "--what must be captions, images or both, got '", what, "'");
    CC_REQUIRE(batch > 0, "--batch must be positive, got ", batch);
    CC_REQUIRE(fs::exists(data), "--data ", data, " does not exist");
    CC_REQUIRE(fs::absolute(out) != fs::absolute(data), "--out ", out,
               " is the dataset itself; embeddings go to a new side file");
    mode::check_new_output(out, "--out");
    const bool captions = what != "images", images_too = what != "captions";

    const ModelConfig cfg = weights_model_config(ckpt);
    io::DatasetExpect expect;
    // End of text is checked from the file's eot_id attribute (prep writes it): the
    // model's vocabulary may be larger than the tokenizer's. Every id must lie in
    // the model's vocabulary, with or without that attribute.
    if (captions) {
        expect.context_length = cfg.context_length;
        expect.vocab_size = cfg.vocab_size;
    }
    if (images_too) {
        expect.image_size = cfg.image_size;
        expect.channels = cfg.channels;
    }
    io::DatasetReader reader(data, expect);
    const std::string fingerprint = io::dataset_fingerprint(reader);
    // Every token row, before the first forward pass (each rank its block; the same
    // Error on every rank).
    if (captions) io::check_token_rows(reader, world);
    auto be = make_backend(p.vm["backend"].as<std::string>());
    ClipModel model(*be, cfg, batch);
    if (captions) require_checkpoint_tokenizer(ckpt, "--checkpoint", data, reader.tokenizer_id());
    load_weights(ckpt, model.params(), /*with_optimizer=*/false);

    const int64_t N = reader.size(), D = cfg.embed_dim;
    const auto [begin, end] = mode::block_of(N, world.rank(), world.size());
    std::vector<float> emb(captions ? size_t((end - begin) * D) : 0), img_emb(images_too ? size_t((end - begin) * D) : 0);
    std::vector<int32_t> tokens;
    std::vector<uint8_t> images;
    const auto t0 = std::chrono::steady_clock::now();
    int64_t last_print = begin;
    for (int64_t s = begin; s < end; s += batch) {
        const int64_t c = std::min(batch, end - s);
        if (captions) {
            tokens.resize(size_t(c * reader.context_length()));
            reader.read_range(s, c, nullptr, tokens.data(), nullptr, nullptr);
            const std::vector<float> e = embed_texts(model, tokens.data(), c);
            std::copy(e.begin(), e.end(), emb.begin() + (s - begin) * D);
        }
        if (images_too) {
            images.resize(size_t(c) * reader.image_bytes());
            reader.read_range(s, c, images.data(), nullptr, nullptr, nullptr);
            const std::vector<float> e = embed_images(model, images.data(), c);
            std::copy(e.begin(), e.end(), img_emb.begin() + (s - begin) * D);
        }
        if (world.rank() == 0 && (s + c - last_print >= 20 * batch || s + c == end)) {
            last_print = s + c;
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("embed %s: rank 0 %lld/%lld rows, %.0f rows/s\n", what.c_str(), (long long)(s + c - begin),
                        (long long)(end - begin), double(s + c - begin) / std::max(sec, 1e-9));
            std::fflush(stdout);
        }
    }
    // Nothing is written unless every embedding of every rank is finite.
    if (captions) require_finite_embeddings(emb, begin, D, "caption", "checkpoint " + ckpt, data, world);
    if (images_too) require_finite_embeddings(img_emb, begin, D, "image", "checkpoint " + ckpt, data, world);
    std::vector<mode::RowBlock> blocks;
    if (captions) blocks.push_back(mode::RowBlock{"/caption_emb", DType::f32, N, D, begin, end - begin, emb.data()});
    if (images_too) blocks.push_back(mode::RowBlock{"/image_emb", DType::f32, N, D, begin, end - begin, img_emb.data()});
    const std::string cmd = command_line("embed", argc, argv);
    const std::string src = fs::absolute(data).string(), ck = fs::absolute(ckpt).string();
    mode::write_side_file(world, out, [&](H5File& f) {
        f.set_attr("/", "format_version", int64_t(1));
        f.set_attr("/", "kind", std::string("embeddings"));
        f.set_attr("/", "what", what);
        f.set_attr("/", "source_dataset", src);
        f.set_attr("/", "source_fingerprint", fingerprint);
        f.set_attr("/", "n", N);
        f.set_attr("/", "dim", D);
        f.set_attr("/", "checkpoint", ck);
        f.set_attr("/", "tokenizer_id", reader.tokenizer_id());
        f.set_attr("/", "normalized", int64_t(1));
        f.set_attr("/", "creation_command", cmd);
    }, blocks);
    if (world.rank() == 0)
        std::printf("wrote %s: %s embeddings [%lld, %lld] of %s\n", out.c_str(), what.c_str(), (long long)N, (long long)D,
                    data.c_str());
    return 0;
}

}  // namespace curaclip
