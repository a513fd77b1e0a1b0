// curaclip eval --checkpoint RUN/latest|FILE --data test.h5 [--tokenizer FILE] [--json out.json]
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "eval/evaluate.h"
#include "io/checkpoint.h"

namespace fs = std::filesystem;

namespace curaclip {


int cmd_eval(int argc, char** argv, const Communicator& world) {
    po::options_description desc("Evaluation");
    desc.add_options()
        ("checkpoint", po::value<std::string>()->required(), "checkpoint file, or a run folder (its latest checkpoint)")
        ("data", po::value<std::string>()->required(), "evaluation dataset (HDF5 with /labels and /classnames for zero-shot)")
        ("tokenizer", po::value<std::string>()->default_value(""), "tokenizer file (default: tokenizer.bpe beside --data)")
        ("batch", po::value<int64_t>()->default_value(256), "examples per forward pass")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
        ("json", po::value<std::string>()->default_value(""), "also write the results as JSON to this file");
    const ParsedOptions p = parse_options(argc, argv, desc,
                                          "usage: [mpirun -n P] curaclip eval --checkpoint runs/tiny --data data/test.h5\n"
                                          "Zero-shot classification and image/text retrieval R@1/5/10.");
    if (p.help) return 0;
    std::string ckpt = p.vm["checkpoint"].as<std::string>();
    if (fs::is_directory(ckpt)) ckpt = resolve_checkpoint(ckpt, "latest");
    const std::string data = p.vm["data"].as<std::string>();
    std::string tok_path = p.vm["tokenizer"].as<std::string>();
    if (tok_path.empty()) tok_path = (fs::path(data).parent_path() / "tokenizer.bpe").string();
    const int64_t batch = p.vm["batch"].as<int64_t>();
    CC_CHECK(batch > 0, "--batch must be positive, got ", batch);

    const ModelConfig cfg = checkpoint_model_config(ckpt);
    auto be = make_backend(p.vm["backend"].as<std::string>());
    ClipModel model(*be, cfg, batch);
    load_checkpoint(ckpt, model.params(), /*with_optimizer=*/false);
    const BpeTokenizer tok = BpeTokenizer::load(tok_path);
    const EvalReport r = evaluate(model, tok, data, world);
    if (world.rank() == 0) {
        std::printf("checkpoint %s on %s\n%s", ckpt.c_str(), data.c_str(), format_report(r).c_str());
        const std::string json_path = p.vm["json"].as<std::string>();
        if (!json_path.empty()) {
            std::ofstream out(json_path);
            out << "{\"checkpoint\": \"" << ckpt << "\", \"data\": \"" << data << "\", " << report_json_fields(r) << "}\n";
            CC_CHECK(out.good(), "cannot write ", json_path);
        }
    }
    return 0;
}

}  // namespace curaclip
