// curaclip export CKPT|RUN --format open_clip --out model.safetensors [--config-out FILE]
//
// Hands a curaclip model to open_clip: its weights as an open_clip state dict in
// safetensors (F32; open_clip's names and shapes, so open_clip's load_checkpoint and
// load_state_dict(strict=True) take it) and open_clip_config.json beside it (model_cfg +
// preprocess_cfg), so that open_clip.create_model("local-dir:FOLDER") builds and loads
// the model, and clip_benchmark can evaluate it (docs/interop.md). Both files are
// written durably (temporary file + rename).
#include <boost/program_options.hpp>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "core/check.h"
#include "interop/open_clip_weights.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/durable_file.h"
#include "model/clip_model.h"

namespace fs = std::filesystem;

namespace curaclip {

int cmd_export(int argc, char** argv) {
    po::options_description desc("Export");
    desc.add_options()
        ("checkpoint", po::value<std::string>()->required(), "checkpoint file or run folder (its latest) (positional)")
        ("format", po::value<std::string>()->required(), "open_clip")
        ("out", po::value<std::string>()->required(), "safetensors file to write")
        ("config-out", po::value<std::string>(),
         "open_clip model config to write (default: open_clip_config.json beside --out)")
        ("overwrite", po::bool_switch()->default_value(false),
         "replace --out and --config-out if they exist (never the checkpoint itself)");
    po::positional_options_description pos;
    pos.add("checkpoint", 1);
    const ParsedOptions p = parse_options(argc, argv, desc,
        "usage: curaclip export runs/mine --format open_clip --out hub/open_clip_model.safetensors\n"
        "Writes the model as open_clip weights + open_clip_config.json (docs/interop.md).", &pos);
    if (p.help) return 0;
    const std::string format = p.vm["format"].as<std::string>();
    CC_REQUIRE(format == "open_clip", "--format '", format, "': the only format is open_clip");
    std::string ckpt = p.vm["checkpoint"].as<std::string>();
    CC_REQUIRE(fs::exists(ckpt), "checkpoint ", ckpt, " does not exist");
    if (fs::is_directory(ckpt)) ckpt = resolve_checkpoint(ckpt, "latest");
    const std::string out = p.vm["out"].as<std::string>();
    const std::string config_out = p.vm.count("config-out")
                                       ? p.vm["config-out"].as<std::string>()
                                       : (fs::path(out).parent_path() / "open_clip_config.json").string();

    // Nothing of the user's is replaced unasked, and the model being exported never.
    const bool overwrite = p.vm["overwrite"].as<bool>();
    auto same = [](const std::string& a, const std::string& b) {
        std::error_code ec;
        return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
    };
    CC_REQUIRE(fs::weakly_canonical(out) != fs::weakly_canonical(config_out), "--out and --config-out are both ", out);
    for (const auto& [what, path] : {std::pair<const char*, std::string>{"--out", out}, {"--config-out", config_out}}) {
        CC_REQUIRE(!same(path, ckpt), what, " ", path, " is the checkpoint being exported: choose another file");
        CC_REQUIRE(!fs::is_directory(path), what, " ", path, " is a folder: give the file to write");
        CC_REQUIRE(overwrite || !fs::exists(path), "refusing to overwrite existing file ", path, " (", what,
                   "); give --overwrite to replace it");
    }
    io::make_directories(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path().string(), "--out");
    io::make_directories(fs::path(config_out).parent_path().empty() ? "." : fs::path(config_out).parent_path().string(),
                         "--config-out");
    const ModelConfig cfg = weights_model_config(ckpt);
    const std::string json = interop::open_clip_config_json(cfg);  // refuses what open_clip cannot build, first
    auto be = make_backend("cpu");
    ClipModel model(*be, cfg, 1);
    load_weights(ckpt, model.params(), /*with_optimizer=*/false);
    interop::write_open_clip_safetensors(out, model.params(), cfg);
    const std::string tmp = config_out + ".tmp." + std::to_string(::getpid());
    ::unlink(tmp.c_str());
    io::write_new_file(tmp, json.data(), json.size());
    io::replace_durably(tmp, config_out);
    std::printf("export: %zu tensors of %s -> %s (open_clip), config %s\n  model: %s\n", model.params().size(),
                ckpt.c_str(), out.c_str(), config_out.c_str(), cfg.summary().c_str());
    return 0;
}

}  // namespace curaclip
