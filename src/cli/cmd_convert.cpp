// curaclip convert --from open_clip FILE.safetensors [--model PRESET|RECIPE.ini] --out CKPT.h5
//
// Imports open_clip / OpenAI CLIP weights (a safetensors state dict; names and layouts
// as src/interop/open_clip_weights.h) into a curaclip checkpoint that train.init_from,
// jest.reference, eval, embed and export read. With --model the recipe gives the shape
// and the tensors are checked against it (every difference listed at once; only the
// image size may differ: the positional embedding is then resized as open_clip's
// resize_pos_embed). Without it the file describes itself (curaclip.model_config
// metadata, or open_clip_config.json beside it, or the tensors with open_clip's
// defaults). The checkpoint is step 0 with zero optimizer moments; --out is never
// overwritten.
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "core/check.h"
#include "interop/open_clip_weights.h"
#include "model/checkpoint.h"
#include "model/clip_model.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
// A preset name, or a recipe file's [model] section.
ModelConfig recipe_model(const std::string& model) {
    for (const auto& n : ModelConfig::preset_names())
        if (n == model) return ModelConfig::preset(model);
    CC_REQUIRE(fs::is_regular_file(model), "--model '", model, "' is neither a preset (tiny, small, vit_b32, vit_b16, "
               "vit_l14) nor a recipe file");
    std::ifstream in(model);
    std::stringstream ss;
    ss << in.rdbuf();
    return model_config_from_ini(ss.str(), model);
}
}  // namespace

int cmd_convert(int argc, char** argv) {
    po::options_description desc("Convert");
    desc.add_options()
        ("from", po::value<std::string>()->required(), "format of the input: open_clip (safetensors state dict)")
        ("input", po::value<std::string>()->required(), "the weights file (positional)")
        ("model", po::value<std::string>(),
         "preset (tiny, small, vit_b32, vit_b16, vit_l14) or recipe file whose [model] the weights must fit; "
         "default: the file's own description")
        ("out", po::value<std::string>()->required(), "checkpoint to write (HDF5; never overwritten)")
        ("antialias", po::value<bool>()->default_value(true),
         "resize a positional embedding of another grid with antialias (as open_clip's load_checkpoint) or without");
    po::positional_options_description pos;
    pos.add("input", 1);
    const ParsedOptions p = parse_options(argc, argv, desc,
        "usage: curaclip convert --from open_clip FILE.safetensors [--model vit_b32|RECIPE.ini] --out ckpt.h5\n"
        "Imports open_clip / OpenAI CLIP weights into a curaclip checkpoint (docs/interop.md).", &pos);
    if (p.help) return 0;
    const std::string from = p.vm["from"].as<std::string>();
    CC_REQUIRE(from == "open_clip", "--from '", from, "': the only format is open_clip (a safetensors state dict)");
    const std::string in = p.vm["input"].as<std::string>(), out = p.vm["out"].as<std::string>();
    CC_REQUIRE(!fs::exists(out), "--out ", out, " exists already; not replacing it");

    const interop::StateDict sd = interop::read_open_clip_state_dict(in);
    ModelConfig cfg;
    if (p.vm.count("model")) {
        cfg = recipe_model(p.vm["model"].as<std::string>());
        const ModelConfig file = interop::model_config_from_state_dict(sd, cfg, in);
        std::vector<std::string> bad = interop::shape_mismatches(file, cfg);
        if (interop::safetensors_describes_model(in))
            for (const std::string& d : hidden_shape_differences(interop::safetensors_model_config(in),
                                                                 "the file's description", cfg, "the recipe"))
                bad.push_back(d);
        std::string list;
        for (const auto& b : bad) list += "\n  " + b;
        CC_REQUIRE(bad.empty(), in, ": the weights do not fit --model ", p.vm["model"].as<std::string>(), " (",
                   bad.size(), bad.size() == 1 ? " difference):" : " differences):", list);
    } else {
        cfg = interop::safetensors_model_config(in);
    }
    cfg.validate();
    auto be = make_backend("cpu");
    ClipModel model(*be, cfg, 1);
    const std::string note = interop::load_state_dict(sd, model.params(), in, p.vm["antialias"].as<bool>());
    for (auto& prm : model.params().all()) {  // a fresh start: zero moments
        std::vector<float> zeros(size_t(prm.shape.numel()), 0.0f);
        be->upload(prm.adam_m, zeros.data());
        be->upload(prm.adam_v, zeros.data());
    }
    CheckpointState st;
    st.config = "# curaclip convert --from open_clip " + in + "\n";
    st.model_config = model_config_to_ini(cfg);
    write_checkpoint_file(out, model.params(), st);
    std::printf("convert: %zu tensors of %s -> %s\n  model: %s\n", model.params().size(), in.c_str(), out.c_str(),
                cfg.summary().c_str());
    if (!note.empty()) std::printf("  %s\n", note.c_str());
    return 0;
}

}  // namespace curaclip
