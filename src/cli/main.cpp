// curaclip <command> [options]: the one binary of the framework.
#include <cstdio>
#include <exception>
#include <string>

#include "backend/registry.h"
#include "model/clip_model.h"

namespace {

void usage() {
    std::printf(
        "usage: curaclip <command> [options]\n"
        "commands:\n"
        "  info      compiled backends, model presets and their sizes\n"
        "run `curaclip <command> --help` for the options of a command\n");
}

int cmd_info() {
    using namespace curaclip;
    std::printf("backends:\n");
    for (const auto& f : registered_backends()) {
        const std::string why = f.unavailable_reason();
        std::printf("  %-8s %s\n", f.name.c_str(), why.empty() ? "available" : why.c_str());
    }
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
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    try {
        if (cmd == "info") return cmd_info();
        std::fprintf(stderr, "curaclip: unknown command '%s'\n", cmd.c_str());
        usage();
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "curaclip %s: error: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
