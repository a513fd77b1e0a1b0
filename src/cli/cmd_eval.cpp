// curaclip eval --checkpoint RUN/latest|FILE --data test.h5 [--tokenizer FILE] [--templates NAME|FILE]
//               [--json out.json]   (what is reported and how: docs/evaluation.md)
// curaclip eval --experts E0,E1,...|RUNS_DIR --assign ASSIGN.h5 --data test.h5 [--routing paper|metaclip]
//   (a routed MoDE ensemble of data experts and the uniform average; src/mode/ensemble.h)
// Refused with an Error (and no --json written): embeddings that are not finite
// (naming the checkpoint, the dataset and the first rows), token ids outside the
// tokenizer or the model's vocabulary, a side file with non-finite centers.
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "eval/evaluate.h"
#include "eval/templates.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/durable_file.h"
#include "mode/ensemble.h"

namespace fs = std::filesystem;

namespace curaclip {


int cmd_eval(int argc, char** argv, const Communicator& world) {
    po::options_description desc("Evaluation");
    desc.add_options()
        ("checkpoint", po::value<std::string>()->default_value(""), "checkpoint file, or a run folder (its latest checkpoint)")
        ("data", po::value<std::string>()->required(), "evaluation dataset (HDF5 with /labels and /classnames for zero-shot)")
        ("tokenizer", po::value<std::string>()->default_value(""), "tokenizer file (default: tokenizer.bpe beside --data)")
        ("batch", po::value<int64_t>()->default_value(256), "examples per forward pass")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
        ("templates", po::value<std::string>()->default_value("default"),
         "zero-shot prompt templates: a built-in set (default: Fashion-MNIST product photos; openai_imagenet: OpenAI "
         "CLIP's 80 ImageNet templates; simple: open_clip's 7) or a file, one template per line with {} for the class")
        ("json", po::value<std::string>()->default_value(""), "also write the results as JSON to this file");
    po::options_description m("MoDE ensemble (instead of --checkpoint)");
    m.add_options()
        ("experts", po::value<std::string>()->default_value(""),
         "expert checkpoints/run folders E0,E1,... (expert c = the c-th), or the folder of train-experts (expert_<c>/)")
        ("assign", po::value<std::string>()->default_value(""), "the cluster side file the experts were trained from")
        ("routing", po::value<std::string>()->default_value("paper"),
         "paper: p(c|T) ~ exp(sum A), A = exp(-d^2/lambda); metaclip: the released MetaCLIP sharpness schedule")
        ("routing-lambda", po::value<double>()->default_value(0.2), "lambda of the paper schedule")
        ("routing-temperature", po::value<double>()->default_value(1.0), "divides the routing softmax logits (both schedules)")
        ("routing-scope", po::value<std::string>()->default_value("task"),
         "zero-shot: task (all class names are one task, one weight per expert: the paper's rule) or class (each "
         "class name routes its own column of scores, as text->image routes each query)")
        ("routing-checkpoint", po::value<std::string>()->default_value(""),
         "model that embedded the captions for clustering (default: the side file's checkpoint attribute)")
        ("routing-encoder", po::value<std::string>()->default_value(""),
         "sentence encoder folder that embedded the captions for clustering (default: the side file's encoder "
         "attribute, when `embed --encoder` made the embeddings); refused unless it is that encoder")
        ("ensemble-space", po::value<std::string>()->default_value("cosine"),
         "cosine (the experts' cosine similarities, default) or logits (scaled by each expert's logit scale)");
    desc.add(m);
    const ParsedOptions p = parse_options(argc, argv, desc,
                                          "usage: [mpirun -n P] curaclip eval --checkpoint runs/tiny --data data/test.h5\n"
                                          "Zero-shot classification (top-1, top-5, mean per-class recall) and image/text\n"
                                          "retrieval R@1/5/10, as clip_benchmark defines them (docs/evaluation.md).");
    if (p.help) return 0;
    std::string ckpt = p.vm["checkpoint"].as<std::string>();
    const std::string experts = p.vm["experts"].as<std::string>();
    CC_REQUIRE(ckpt.empty() != experts.empty(), "give either --checkpoint (one model) or --experts (a MoDE ensemble)");
    // The ensemble's options would silently do nothing to one model.
    if (experts.empty())
        for (const char* o : {"assign", "routing", "routing-lambda", "routing-temperature", "routing-scope",
                              "routing-checkpoint", "routing-encoder", "ensemble-space"})
            CC_REQUIRE(p.vm[o].defaulted(), "--", o, " applies to a MoDE ensemble (--experts), not to --checkpoint");
    const std::string data = p.vm["data"].as<std::string>();
    std::string tok_path = p.vm["tokenizer"].as<std::string>();
    if (tok_path.empty()) tok_path = (fs::path(data).parent_path() / "tokenizer.bpe").string();
    const int64_t batch = p.vm["batch"].as<int64_t>();
    CC_REQUIRE(batch > 0, "--batch must be positive, got ", batch);
    const std::string json_path = p.vm["json"].as<std::string>();
    // Found before the evaluation, not after it.
    CC_REQUIRE(json_path.empty() || fs::is_directory(fs::absolute(json_path).parent_path()), "--json ", json_path,
               ": the directory ", fs::absolute(json_path).parent_path().string(), " does not exist");
    CC_REQUIRE(json_path.empty() || !fs::is_directory(json_path), "--json ", json_path, " is a directory");
    const std::string templates_spec = p.vm["templates"].as<std::string>();
    const std::vector<std::string> templates = resolve_templates(templates_spec);
    if (!experts.empty()) {
        mode::EnsembleOptions eo;
        eo.routing.schedule = mode::parse_routing_schedule(p.vm["routing"].as<std::string>());
        eo.routing.lambda = p.vm["routing-lambda"].as<double>();
        eo.routing.temperature = p.vm["routing-temperature"].as<double>();
        eo.scope = mode::parse_routing_scope(p.vm["routing-scope"].as<std::string>());
        CC_REQUIRE(std::isfinite(eo.routing.lambda) && eo.routing.lambda > 0,
                   "--routing-lambda must be a positive finite number, got ", eo.routing.lambda);
        CC_REQUIRE(std::isfinite(eo.routing.temperature) && eo.routing.temperature > 0,
                   "--routing-temperature must be a positive finite number, got ", eo.routing.temperature);
        const std::string space = p.vm["ensemble-space"].as<std::string>();
        CC_REQUIRE(space == "cosine" || space == "logits", "--ensemble-space must be cosine or logits, got '", space, "'");
        eo.cosine = space == "cosine";
        eo.batch = batch;
        eo.backend = p.vm["backend"].as<std::string>();
        eo.templates = templates;
        const mode::Assignment a = mode::read_assignment(p.vm["assign"].as<std::string>(), false, "--assign");
        std::string routing_ckpt = p.vm["routing-checkpoint"].as<std::string>();
        eo.routing_encoder = p.vm["routing-encoder"].as<std::string>();
        CC_REQUIRE(routing_ckpt.empty() || eo.routing_encoder.empty(),
                   "give --routing-checkpoint or --routing-encoder, not both");
        CC_REQUIRE(routing_ckpt.empty() || a.encoder_id.empty(), "--routing-checkpoint ", routing_ckpt, ": the centers of ",
                   a.path, " were made by the sentence encoder '", a.encoder_id, "' (", a.encoder,
                   "); routing must embed with it (--routing-encoder, default: that folder)");
        if (eo.routing_encoder.empty() && !a.encoder_id.empty()) eo.routing_encoder = a.encoder;
        if (routing_ckpt.empty()) routing_ckpt = a.checkpoint;
        const std::vector<std::string> list = mode::resolve_expert_checkpoints(experts);
        const mode::EnsembleReport r = mode::evaluate_ensemble(list, a, routing_ckpt, tok_path, data, world, eo);
        if (world.rank() == 0) {
            std::printf("MoDE ensemble of %zu experts on %s\n%s", list.size(), data.c_str(),
                        mode::format_ensemble_report(r, eo).c_str());
            if (!json_path.empty()) {
                std::ostringstream out;
                out << "{\"data\": \"" << data << "\", \"assign\": \"" << a.path << "\", \"templates\": \""
                    << templates_spec << "\", "
                    << mode::ensemble_report_json(r, eo) << "}\n";
                io::write_text_file(json_path, out.str(), /*replace=*/true);
            }
        }
        return 0;
    }
    if (fs::is_directory(ckpt)) ckpt = resolve_checkpoint(ckpt, "latest");
    const ModelConfig cfg = weights_model_config(ckpt);
    auto be = make_backend(p.vm["backend"].as<std::string>());
    ClipModel model(*be, cfg, batch);
    const BpeTokenizer tok = BpeTokenizer::load(tok_path);
    require_checkpoint_tokenizer(ckpt, "--checkpoint", data, tok.id_hex());
    load_weights(ckpt, model.params(), /*with_optimizer=*/false);
    const EvalReport r = evaluate(model, tok, data, world, templates, "checkpoint " + ckpt);
    if (world.rank() == 0) {
        std::printf("checkpoint %s on %s\n%s", ckpt.c_str(), data.c_str(), format_report(r).c_str());
        if (!json_path.empty()) {
            std::ostringstream out;
            out << "{\"checkpoint\": \"" << ckpt << "\", \"data\": \"" << data << "\", \"templates\": \""
                << templates_spec << "\", " << report_json_fields(r) << "}\n";
            io::write_text_file(json_path, out.str(), /*replace=*/true);
        }
    }
    return 0;
}

}  // namespace curaclip
