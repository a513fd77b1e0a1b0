// curaclip embed --checkpoint RUN|FILE --data DS.h5 --out EMB.h5 [--what captions|images]
//
// L2-normalized embeddings of every example of a dataset by a checkpoint's text
// tower (captions, from the dataset's /tokens) or image tower (images), for MoDE
// clustering (DESIGN §7) and JEST's cached reference embeddings (§6). Each rank
// embeds its contiguous block of rows; the ranks write their rows in turn into a
// NEW side file (/caption_emb or /image_emb [N, D]); the dataset is never touched.
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "eval/embed.h"
#include "io/checkpoint.h"
#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "mode/clustering.h"
#include "mode/side_file.h"
#include "model/clip_model.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
ModelConfig model_config_of(const std::string& path) {
    const std::string ini = H5File(path, H5File::Mode::read).attr_string("/", "config");
    po::options_description desc;
    desc.add(model_options());
    po::variables_map vm;
    std::istringstream in(ini);
    po::store(po::parse_config_file(in, desc, /*allow_unregistered=*/true), vm);
    po::notify(vm);
    return model_config_from(vm);
}

std::string command_line(const char* name, int argc, char** argv) {
    std::string s = std::string("curaclip ") + name;
    for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
    return s;
}
}  // namespace

int cmd_embed(int argc, char** argv, const Communicator& world) {
    po::options_description desc("Embedding");
    desc.add_options()
        ("checkpoint", po::value<std::string>()->required(), "checkpoint file, or a run folder (its latest checkpoint)")
        ("data", po::value<std::string>()->required(), "dataset (HDF5) whose examples are embedded")
        ("out", po::value<std::string>()->required(), "new HDF5 side file to write (never overwritten)")
        ("what", po::value<std::string>()->default_value("captions"), "captions (text tower -> /caption_emb) or images (image tower -> /image_emb)")
        ("batch", po::value<int64_t>()->default_value(256), "examples per forward pass")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda");
    const ParsedOptions p = parse_options(argc, argv, desc,
        "usage: [mpirun -n P] curaclip embed --checkpoint runs/seed --data data/train.h5 --out data/train_emb.h5\n"
        "L2-normalized caption (or image) embeddings of every example, for MoDE clustering.");
    if (p.help) return 0;
    std::string ckpt = p.vm["checkpoint"].as<std::string>();
    CC_CHECK(fs::exists(ckpt), "--checkpoint ", ckpt, " does not exist");
    if (fs::is_directory(ckpt)) ckpt = resolve_checkpoint(ckpt, "latest");
    const std::string data = p.vm["data"].as<std::string>();
    const std::string out = p.vm["out"].as<std::string>();
    const std::string what = p.vm["what"].as<std::string>();
    const int64_t batch = p.vm["batch"].as<int64_t>();
    CC_CHECK(what == "captions" || what == "images", "--what must be captions or images, got '", what, "'");
    CC_CHECK(batch > 0, "--batch must be positive, got ", batch);
    CC_CHECK(fs::exists(data), "--data ", data, " does not exist");
    CC_CHECK(fs::absolute(out) != fs::absolute(data), "--out ", out, " is the dataset itself; embeddings go to a new side file");
    mode::check_new_output(out, "--out");
    const bool captions = what == "captions";

    const ModelConfig cfg = model_config_of(ckpt);
    io::DatasetExpect expect;
    if (captions) expect.context_length = cfg.context_length;
    else {
        expect.image_size = cfg.image_size;
        expect.channels = cfg.channels;
    }
    io::DatasetReader reader(data, expect);
    auto be = make_backend(p.vm["backend"].as<std::string>());
    ClipModel model(*be, cfg, batch);
    load_checkpoint(ckpt, model.params(), /*with_optimizer=*/false);

    const int64_t N = reader.size(), D = cfg.embed_dim;
    const auto [begin, end] = mode::block_of(N, world.rank(), world.size());
    std::vector<float> emb(size_t((end - begin) * D));
    std::vector<int32_t> tokens;
    std::vector<uint8_t> images;
    const auto t0 = std::chrono::steady_clock::now();
    int64_t last_print = begin;
    for (int64_t s = begin; s < end; s += batch) {
        const int64_t c = std::min(batch, end - s);
        std::vector<float> e;
        if (captions) {
            tokens.resize(size_t(c * reader.context_length()));
            reader.read_range(s, c, nullptr, tokens.data(), nullptr, nullptr);
            e = embed_texts(model, tokens.data(), c);
        } else {
            images.resize(size_t(c) * reader.image_bytes());
            reader.read_range(s, c, images.data(), nullptr, nullptr, nullptr);
            e = embed_images(model, images.data(), c);
        }
        std::copy(e.begin(), e.end(), emb.begin() + (s - begin) * D);
        if (world.rank() == 0 && (s + c - last_print >= 20 * batch || s + c == end)) {
            last_print = s + c;
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("embed %s: rank 0 %lld/%lld rows, %.0f rows/s\n", what.c_str(), (long long)(s + c - begin),
                        (long long)(end - begin), double(s + c - begin) / std::max(sec, 1e-9));
            std::fflush(stdout);
        }
    }
    const std::string key = captions ? "/caption_emb" : "/image_emb";
    const std::string cmd = command_line("embed", argc, argv);
    const std::string src = fs::absolute(data).string(), ck = fs::absolute(ckpt).string();
    mode::write_side_file(world, out, [&](H5File& f) {
        f.set_attr("/", "format_version", int64_t(1));
        f.set_attr("/", "kind", std::string("embeddings"));
        f.set_attr("/", "what", what);
        f.set_attr("/", "source_dataset", src);
        f.set_attr("/", "n", N);
        f.set_attr("/", "dim", D);
        f.set_attr("/", "checkpoint", ck);
        f.set_attr("/", "tokenizer_id", reader.tokenizer_id());
        f.set_attr("/", "normalized", int64_t(1));
        f.set_attr("/", "creation_command", cmd);
    }, {mode::RowBlock{key, DType::f32, N, D, begin, end - begin, emb.data()}});
    if (world.rank() == 0) std::printf("wrote %s: %s [%lld, %lld] from %s\n", out.c_str(), key.c_str(), (long long)N, (long long)D, data.c_str());
    return 0;
}

}  // namespace curaclip
