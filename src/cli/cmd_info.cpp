// `curaclip info [FILE|RUN_DIR ...]`: what this build can do (no argument), or what
// a file holds: for a dataset its rows, image size and channels, context, tokenizer,
// source, creation command, shards, rejects and three sample captions; for a
// checkpoint (or a run folder: its latest) the model shape, step and options.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cpu/blas_kernels.h"
#include "core/check.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "model/clip_model.h"
#ifdef CURACLIP_HAVE_CUDA
#include "cuda/device_info.h"
#endif

namespace fs = std::filesystem;

namespace curaclip {
namespace {

void print_build() {
    std::printf("backends:\n");
    for (const auto& f : registered_backends()) {
        const std::string why = f.unavailable_reason();
        std::printf("  %-8s %s\n", f.name.c_str(), why.empty() ? "available" : why.c_str());
    }
    {
        const char* set = std::getenv("OPENBLAS_CORETYPE");
        std::printf("OpenBLAS kernels: %s%s\n", cpu::blas_core_name().c_str(),
                    set ? (std::string(" (OPENBLAS_CORETYPE=") + set + ")").c_str() : "");
    }
#ifdef CURACLIP_HAVE_CUDA
    std::printf("CUDA: %s", cuda::device_report().c_str());
#else
    std::printf("CUDA: not compiled in\n");
#endif
    std::printf("model presets (parameters, forward GFLOP per pair):\n");
    auto be = make_backend("cpu");
    for (const auto& name : ModelConfig::preset_names()) {
        const ModelConfig cfg = ModelConfig::preset(name);
        // Count parameters without allocating a large model: declare only.
        ParameterSet ps(*be);
        VisionTower v;
        TextTower t;
        v.declare(ps, cfg);
        t.declare(ps, cfg);
        std::printf("  %-8s %12lld  %8.3f   %s\n", name.c_str(), (long long)ps.count() + 1,
                    cfg.forward_flops_per_pair() / 1e9, cfg.summary().c_str());
    }
}

std::string attr_or(const H5File& f, const char* name, const std::string& fallback = "-") {
    return f.has_attr("/", name) ? f.attr_string("/", name) : fallback;
}

void print_dataset(const std::string& path) {
    const io::DatasetReader r(path);
    const H5File f(path, H5File::Mode::read);
    std::printf("dataset %s\n", path.c_str());
    std::printf("  rows            %lld\n", (long long)r.size());
    std::printf("  images          %d x %d, %d channel%s (uint8)\n", r.image_size(), r.image_size(), r.channels(),
                r.channels() == 1 ? "" : "s");
    std::printf("  tokens          context %d, tokenizer %s", r.context_length(), r.tokenizer_id().c_str());
    if (r.eot_id() >= 0) std::printf(" (end of text %d)", r.eot_id());
    std::printf("\n  source          %s\n", r.source().empty() ? "-" : r.source().c_str());
    std::printf("  created by      %s\n", r.creation_command().empty() ? "-" : r.creation_command().c_str());
    if (r.has_labels())
        std::printf("  labels          yes, %zu class names%s\n", r.classnames().size(),
                    r.classnames().empty() ? " (no /classnames: no zero-shot evaluation)" : "");
    if (!r.classnames().empty()) {
        std::string s;
        for (size_t i = 0; i < r.classnames().size() && i < 8; ++i) s += (i ? ", " : "") + r.classnames()[i];
        if (r.classnames().size() > 8) s += ", ...";
        std::printf("  class names     %s\n", s.c_str());
    }
    if (r.has_image_ids()) std::printf("  image ids       yes (rows sharing an image: several captions per image)\n");
    if (r.has_corrupted()) std::printf("  /corrupted      yes (prep --noise)\n");
    for (const char* extra : {"/ref_emb", "/caption_emb", "/image_emb"})
        if (f.exists(extra)) std::printf("  %-15s present\n", extra);
    if (f.has_attr("/", "samples_read")) {
        std::printf("  prepared        %lld samples read, %lld kept, %lld rejected", (long long)f.attr_i64("/", "samples_read"),
                    (long long)f.attr_i64("/", "samples_kept"), (long long)f.attr_i64("/", "samples_rejected"));
        std::string why;
        for (const char* reason : {"missing_image", "unreadable_image", "undecodable_image", "image_too_large",
                                   "missing_caption", "empty_caption", "invalid_utf8", "duplicate_key", "bad_label",
                                   "bad_record", "truncated_input"}) {
            const std::string a = std::string("rejected_") + reason;
            if (!f.has_attr("/", a)) continue;
            const int64_t n = f.attr_i64("/", a);
            if (n > 0) why += (why.empty() ? "" : ", ") + std::to_string(n) + " " + reason;
        }
        std::printf("%s%s%s\n", why.empty() ? "" : " (", why.c_str(), why.empty() ? "" : ")");
        std::printf("  rejects file    %s\n", attr_or(f, "rejects_file").c_str());
    }
    if (f.exists("/shards/paths")) {
        const std::vector<std::string> paths = io::h5_read_strings(f.id(), path, "/shards/paths");
        const std::vector<std::string> inputs = io::h5_read_strings(f.id(), path, "/shards/inputs");
        const std::vector<double> rows = f.read_f64("/shards/rows");
        std::printf("  shards          %zu\n", paths.size());
        for (size_t i = 0; i < paths.size(); ++i) {
            if (i == 5 && paths.size() > 6) {
                std::printf("                  ... (%zu more)\n", paths.size() - 6);
                i = paths.size() - 1;
            }
            std::printf("    %-28s %8lld rows  from %s\n", paths[i].c_str(), (long long)rows[i],
                        i < inputs.size() ? inputs[i].c_str() : "-");
        }
    }
    const int64_t show = std::min<int64_t>(3, r.size());
    if (show > 0) {
        std::printf("  sample captions\n");
        const std::vector<std::string> caps = r.read_captions(0, show);
        for (int64_t i = 0; i < show; ++i) std::printf("    [%lld] %s\n", (long long)i, caps[size_t(i)].c_str());
    }
}

void print_checkpoint(const std::string& path) {
    const H5File f(path, H5File::Mode::read);
    const ModelConfig cfg = weights_model_config(path);
    std::printf("checkpoint %s\n", path.c_str());
    std::printf("  model           %s\n", cfg.summary().c_str());
    std::printf("  step            %lld\n", (long long)f.attr_i64("/", "step"));
    if (f.has_attr("/", "loader_epoch"))
        std::printf("  data position   epoch %lld, batch %lld\n", (long long)f.attr_i64("/", "loader_epoch"),
                    (long long)f.attr_i64("/", "loader_step"));
    if (f.has_attr("/", "seed")) std::printf("  seed            %lld\n", (long long)f.attr_i64("/", "seed"));
    std::printf("  optimizer state %s\n", f.exists("/optimizer") ? "yes" : "no");
    if (f.has_attr("/", "config")) {
        std::printf("  options\n");
        const std::string c = f.attr_string("/", "config");
        size_t pos = 0;
        while (pos < c.size()) {
            const size_t nl = c.find('\n', pos);
            const std::string line = c.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
            if (!line.empty()) std::printf("    %s\n", line.c_str());
            if (nl == std::string::npos) break;
            pos = nl + 1;
        }
    }
}

}  // namespace

int cmd_info(int argc, char** argv) {
    if (argc <= 1) {
        print_build();
        return 0;
    }
    for (int i = 1; i < argc; ++i) {
        std::string path = argv[i];
        if (path == "--help" || path == "-h") {
            std::printf("usage: curaclip info [FILE|RUN_DIR ...]\n"
                        "Without arguments: backends and model presets. With a dataset (.h5 from prep), a\n"
                        "checkpoint or a run folder (its latest checkpoint): what the file holds.\n");
            return 0;
        }
        CC_REQUIRE(fs::exists(path), "info: ", path, " does not exist");
        if (fs::is_directory(path)) path = resolve_checkpoint(path, "latest");
        const H5File f(path, H5File::Mode::read);
        if (i > 1) std::printf("\n");
        if (f.has_attr("/", "model_config")) print_checkpoint(path);
        else if (f.exists("/images")) print_dataset(path);
        else CC_USER_FAIL("info: ", path, " is neither a curaclip dataset (no /images) nor a checkpoint (no "
                          "model_config attribute)");
    }
    return 0;
}

}  // namespace curaclip
