// The trainer's defences against silently wrong runs (issue 11), each on one process:
// the logit-scale cap in the forward with torch.clamp's gradient, metrics lines that
// stay JSON with non-finite numbers, options that are not finite or make no sense,
// the JEST super-batch that no longer depends on the rank count, what a resume may
// change, and the run's stored options layered under the command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "cli/options.h"
#include "core/check.h"
#include "jest/config.h"
#include "loss/contrastive_loss.h"
#include "model/model_config.h"
#include "mpi/collectives.h"
#include "optim/adamw.h"
#include "train/metrics_log.h"
#include "train/resume_check.h"
#include "cli/model_options.h"
#include "cli/train_options.h"
#include "train/trainer.h"
#include "tests/common/test_files.h"

namespace fs = std::filesystem;

namespace curaclip {
namespace {

using testing::error_of;

// ---- logit-scale cap ------------------------------------------------------------

struct LossRig {
    static constexpr int64_t B = 4, D = 3;
    std::unique_ptr<Backend> be = make_backend("cpu-f64");
    std::unique_ptr<Collectives> coll = make_single_process_collectives(*be);
    Arena arena{*be, 1 << 14, "test"};
    Tensor img = arena.alloc({B, D}, DType::f64), txt = arena.alloc({B, D}, DType::f64);
    Tensor scale = arena.alloc({1}, DType::f64), bias = arena.alloc({1}, DType::f64);
    Tensor dimg = arena.alloc({B, D}, DType::f64), dtxt = arena.alloc({B, D}, DType::f64);
    Tensor dscale = arena.alloc({1}, DType::f64), dbias = arena.alloc({1}, DType::f64);

    struct Out {
        double loss, dscale, dbias;
        std::vector<double> dimg;
    };
    // Loss and gradients at logit scale t; dscale starts at 0.25 (gradients accumulate).
    Out run(LossKind kind, double t) {
        const std::vector<double> x = {0.6, 0.8, 0, 0, 1, 0, 0.8, 0, 0.6, 0, 0.6, 0.8};
        const std::vector<double> y = {0.8, 0.6, 0, 0, 0.8, 0.6, 1, 0, 0, 0, 0, 1};
        be->upload(img, x.data());
        be->upload(txt, y.data());
        be->upload(scale, &t);
        const double b = -10.0, start = 0.25;
        be->upload(bias, &b);
        be->upload(dscale, &start);
        for (Tensor g : {dimg, dtxt, dbias}) be->fill(g, 0.0f);
        ContrastiveLoss loss(*be, kind, B, D, *coll);
        loss.forward_backward(img, txt, scale, bias, dimg, dtxt, dscale, dbias);
        Out o;
        o.loss = loss.loss();
        be->download(&o.dscale, dscale);
        be->download(&o.dbias, dbias);
        o.dimg.resize(size_t(B * D));
        be->download(o.dimg.data(), dimg);
        return o;
    }
};

class LogitScaleCap : public ::testing::TestWithParam<LossKind> {};

TEST_P(LogitScaleCap, AboveLn100TheForwardUsesLn100AndTheScaleGetsNoGradient) {
    LossRig rig;
    const double cap = kMaxLogitScale;
    EXPECT_EQ(cap, double(float(std::log(100.0))));  // AdamW's clamp writes this value
    EXPECT_EQ(float(cap), float(AdamW::kMaxLogitScale));
    const LossRig::Out at_cap = rig.run(GetParam(), cap);
    // t == ln 100 itself: torch.clamp passes the gradient at the bound.
    EXPECT_NE(at_cap.dscale, 0.25);
    for (double t : {100.0, std::nextafter(cap, 1e9), 1e30, std::numeric_limits<double>::infinity()}) {
        const LossRig::Out o = rig.run(GetParam(), t);
        EXPECT_TRUE(std::isfinite(o.loss)) << "t = " << t;
        EXPECT_EQ(o.loss, at_cap.loss) << "t = " << t;  // exp(t) capped at 100, bit for bit
        EXPECT_EQ(o.dscale, 0.25) << "t = " << t;       // d/dt of a clamped value: 0, nothing accumulated
        EXPECT_EQ(o.dbias, at_cap.dbias) << "t = " << t;
        EXPECT_EQ(o.dimg, at_cap.dimg) << "t = " << t;
    }
    // Below the cap nothing changes; a NaN scale stays visible (the step is then skipped).
    const LossRig::Out low = rig.run(GetParam(), 2.0);
    EXPECT_NE(low.loss, at_cap.loss);
    EXPECT_NE(low.dscale, 0.25);
    EXPECT_TRUE(std::isnan(rig.run(GetParam(), std::nan("")).loss));
}

INSTANTIATE_TEST_SUITE_P(Both, LogitScaleCap, ::testing::Values(LossKind::softmax, LossKind::sigmoid),
                         [](const auto& info) { return std::string(loss_kind_name(info.param)); });

TEST(LogitScaleCapForScores, CappedCopyOnlyAboveTheCap) {
    auto be = make_backend("cpu");
    Arena arena(*be, 1 << 12, "test");
    Tensor t = arena.alloc({1}, DType::f32), scratch = arena.alloc({1}, DType::f32);
    bool capped = true;
    float v = 3.0f;
    be->upload(t, &v);
    EXPECT_EQ(capped_logit_scale(*be, t, scratch, &capped).data, t.data);
    EXPECT_FALSE(capped);
    v = 100.0f;
    be->upload(t, &v);
    const Tensor c = capped_logit_scale(*be, t, scratch, &capped);
    EXPECT_TRUE(capped);
    EXPECT_EQ(c.data, scratch.data);
    float got = 0;
    be->download(&got, c);
    EXPECT_EQ(got, 4.60517025f);
    be->download(&got, t);
    EXPECT_EQ(got, 100.0f);  // the parameter itself is untouched
}

// ---- metrics.jsonl ------------------------------------------------------------------

TEST(MetricsJson, NonFiniteNumbersBecomeNullAndStringsStay) {
    EXPECT_EQ(json_number(std::nan(""), "%.6f"), "null");
    EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), "null");
    EXPECT_EQ(json_number(0.5, "%.6f"), "0.500000");
    const std::string in =
        "{\"loss\": nan, \"a\": -nan, \"b\": inf, \"c\": -inf, \"d\": [NaN, Infinity, 1.5], "
        "\"name\": \"nan inf\", \"inf_count\": 2, \"e\": 1e-5, \"nan\": \"-inf\"}";
    const std::string out = json_null_non_finite(in);
    EXPECT_EQ(out,
              "{\"loss\": null, \"a\": null, \"b\": null, \"c\": null, \"d\": [null, null, 1.5], "
              "\"name\": \"nan inf\", \"inf_count\": 2, \"e\": 1e-5, \"nan\": \"-inf\"}");
    const nlohmann::json j = nlohmann::json::parse(out);
    EXPECT_TRUE(j["loss"].is_null());
    EXPECT_EQ(j["name"], "nan inf");
    EXPECT_EQ(j["d"][2], 1.5);
    EXPECT_FALSE(nlohmann::json::accept(in));  // why this exists
}

TEST(MetricsJson, LogWithANanLossParsesAsJson) {
    const fs::path dir = fs::temp_directory_path() / ("curaclip_metrics_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "metrics.jsonl").string();
    {
        MetricsLog log;
        log.open(path);
        char buf[256];
        std::snprintf(buf, sizeof buf, "{\"step\": 3, \"loss\": %.6f, \"grad_norm\": %.6f, \"skipped\": 3}", std::nan(""),
                      std::numeric_limits<double>::infinity());
        log.write(buf);  // printf's own nan/inf, as the eval report's fields would hold them
        log.write("{\"step\": 4, \"loss\": " + json_number(2.5, "%.6f") + "}");
    }
    std::ifstream in(path);
    std::string line;
    std::vector<nlohmann::json> rows;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_TRUE(rows[0]["loss"].is_null());
    EXPECT_TRUE(rows[0]["grad_norm"].is_null());
    EXPECT_EQ(rows[0]["skipped"], 3);
    EXPECT_EQ(rows[1]["loss"], 2.5);
    fs::remove_all(dir);
    MetricsLog bad;
    EXPECT_NE(error_of([&] { bad.open((dir / "no" / "such" / "metrics.jsonl").string()); }).find("metrics.jsonl"),
              std::string::npos);
}

// ---- options ----------------------------------------------------------------------

struct Argv {
    std::vector<std::string> words;
    std::vector<char*> ptrs;
    explicit Argv(std::vector<std::string> w) : words(std::move(w)) {
        for (auto& s : words) ptrs.push_back(s.data());
    }
    int argc() const { return int(ptrs.size()); }
    char** argv() { return ptrs.data(); }
};

po::options_description train_desc() {
    po::options_description d;
    d.add(model_options()).add(train_options());
    return d;
}

ParsedOptions parse(std::vector<std::string> words, const RunDefaults* run = nullptr) {
    words.insert(words.begin(), "train");
    Argv a(std::move(words));
    return parse_options(a.argc(), a.argv(), train_desc(), "usage", nullptr, run);
}

TEST(TrainOptionsCheck, NonFiniteAndNonsensicalValuesNameTheOption) {
    const std::vector<std::string> base = {"--data.train", "x.h5", "--train.out", "run"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> w = base;
        w.insert(w.end(), extra.begin(), extra.end());
        return error_of([&] {
            const ParsedOptions p = parse(w);
            (void)train_options_from(p.vm);
            (void)model_config_from(p.vm);
        });
    };
    EXPECT_EQ(with({"--train.lr", "nan"}), "option train.lr = nan is not a finite number");
    EXPECT_EQ(with({"--jest.temperature", "inf"}), "option jest.temperature = inf is not a finite number");
    EXPECT_EQ(with({"--model.flexi_fraction", "-inf"}), "option model.flexi_fraction = -inf is not a finite number");
    EXPECT_EQ(with({"--train.lr", "1e6"}),
              "train.lr = 1e+06 is outside [0, 1] (AdamW moves each weight by about lr per step; CLIP recipes use "
              "1e-4 .. 5e-3)");
    EXPECT_EQ(with({"--model.image_mean", "nan"}), "model.image_mean: 'nan' holds nan, not a finite number");
    EXPECT_EQ(with({"--model.image_mean", "1.5"}),
              "model.image_mean: channel 0 = 1.5 is outside [0, 1] (pixels are u8/255 in [0, 1])");
    EXPECT_EQ(with({"--model.image_std", "1e-30"}),
              "model.image_std: channel 0 = 1e-30 is outside [0.001, 10] (pixels are u8/255 in [0, 1])");
    EXPECT_EQ(with({"--train.warmup", "100", "--train.steps", "20"}), "train.warmup = 100 must be in [0, train.steps = 20]");
    EXPECT_NE(with({"--train.lr", "0.5", "--train.weight_decay", "2"}).find("train.lr * train.weight_decay < 1"),
              std::string::npos);
    EXPECT_EQ(with({"--train.max_skipped_steps", "-1"}), "train.max_skipped_steps must be >= 0 (0: never stop), got -1");
    EXPECT_EQ(with({"--train.min_lr", "1", "--train.lr", "0.1"}), "train.min_lr = 1 must be in [0, train.lr = 0.1]");
    EXPECT_EQ(with({}), "");
    const ParsedOptions p = parse(base);
    EXPECT_EQ(train_options_from(p.vm).max_skipped_steps, 20);  // the default
}

TEST(TrainOptionsCheck, ConfigThatIsAFolderOrMissingIsAnError) {
    const std::string dir = fs::temp_directory_path().string();
    EXPECT_EQ(error_of([&] { parse({"--config", dir}); }), "--config " + dir + " is a folder, not an INI config file");
    EXPECT_EQ(error_of([&] { parse({"--config", dir + "/curaclip_no_such.ini"}); }),
              "--config " + dir + "/curaclip_no_such.ini: config file not found");
}

TEST(TrainOptionsCheck, ARunsStoredOptionsSitBetweenCommandLineAndConfigFile) {
    const fs::path dir = fs::temp_directory_path() / ("curaclip_layers_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string cfg = (dir / "recipe.ini").string();
    std::ofstream(cfg) << "[data]\ntrain = data/train.h5\n[train]\nout = runs/a\nsteps = 4000\nbatch_size = 256\n"
                          "lr = 0.001\n";
    RunDefaults run{"[data]\ntrain = mine.h5\n[train]\nsteps = 20\nbatch_size = 32\nlr = 0.001\nresume = \n", "ckpt.h5"};
    // The README's resume line: the recipe again, no other option -> the run's values.
    const ParsedOptions p = parse({"--config", cfg, "--train.resume", "latest"}, &run);
    EXPECT_EQ(p.vm["train.steps"].as<int64_t>(), 20);
    EXPECT_EQ(p.vm["train.batch_size"].as<int64_t>(), 32);
    EXPECT_EQ(p.vm["data.train"].as<std::string>(), "mine.h5");
    EXPECT_EQ(p.vm["train.out"].as<std::string>(), "runs/a");  // only in the file: the file's
    EXPECT_EQ(p.vm["train.resume"].as<std::string>(), "latest");  // the command line wins
    ASSERT_EQ(p.notes.size(), 1u);
    EXPECT_EQ(p.notes[0], "the run's own options (ckpt.h5) take precedence over " + cfg +
                              ": data.train = mine.h5 (file: data/train.h5), train.batch_size = 32 (file: 256), "
                              "train.steps = 20 (file: 4000); an option on the command line changes one where a "
                              "resume allows it");
    // An explicit option beats the run's stored one.
    const ParsedOptions q = parse({"--config", cfg, "--train.resume", "latest", "--train.steps", "40"}, &run);
    EXPECT_EQ(q.vm["train.steps"].as<int64_t>(), 40);
    EXPECT_TRUE(q.on_command_line.count("train.steps"));
    // Without a run: the file as before.
    EXPECT_EQ(parse({"--config", cfg}).vm["train.steps"].as<int64_t>(), 4000);
    Argv a({"train", "--config", cfg, "--train.out", "runs/b"});
    EXPECT_EQ(peek_option(a.argc(), a.argv(), train_desc(), "train.out").value_or("?"), "runs/b");
    EXPECT_EQ(peek_option(a.argc(), a.argv(), train_desc(), "train.steps").value_or("?"), "4000");
    EXPECT_FALSE(peek_option(a.argc(), a.argv(), train_desc(), "train.resume").has_value());
    fs::remove_all(dir);
}

// ---- what a resume may change ---------------------------------------------------------

TEST(ResumeCheck, ModelDataBatchAndScheduleAreRefusedStepsAndIntervalsAllowed) {
    const std::string run = "[data]\ntrain = a.h5\n[train]\nbatch_size = 32\nsteps = 20\nlog_every = 5\nlr = 0.001\n"
                            "threads = 0\nseed = 1\n";
    const std::string now = "[data]\ntrain = a.h5\n[train]\nbatch_size = 64\nsteps = 40\nlog_every = 10\nlr = 0.001\n"
                            "threads = 2\nseed = 2\nmax_skipped_steps = 5\n";
    ModelConfig m;
    ModelConfig m2 = m;
    m2.activation = Activation::quick_gelu;
    const std::vector<OptionChange> c = resume_changes(run, model_config_to_ini(m), now, model_config_to_ini(m2));
    ASSERT_EQ(c.size(), 6u);
    const std::vector<std::tuple<std::string, std::string, std::string, bool>> want = {
        {"model.activation", "gelu", "quick_gelu", false}, {"train.batch_size", "32", "64", false},
        {"train.log_every", "5", "10", true},              {"train.seed", "1", "2", false},
        {"train.steps", "20", "40", true},                 {"train.threads", "0", "2", true}};
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(c[i].key, std::get<0>(want[i]));
        EXPECT_EQ(c[i].run_value, std::get<1>(want[i]));
        EXPECT_EQ(c[i].new_value, std::get<2>(want[i]));
        EXPECT_EQ(c[i].allowed, std::get<3>(want[i])) << c[i].key;
    }
    EXPECT_TRUE(resume_changes(run, model_config_to_ini(m), run, model_config_to_ini(m)).empty());
    for (const char* k : {"train.lr", "train.warmup", "train.min_lr", "data.train", "data.tokenizer", "jest.enable",
                          "jest.filter_ratio", "mode.expert", "model.embed_dim", "train.grad_clip"})
        EXPECT_FALSE(resume_may_change(k)) << k;
    EXPECT_EQ(ini_values("# c\n[a]\n x = 1 \n[b]\ny=\n")["a.x"], "1");
}

// ---- JEST super-batch ---------------------------------------------------------------------

TEST(JestSuperBatch, SameOnEveryRankCountOrRefused) {
    // The bug report: b = 18, f = 0.6 was 45 on one rank and 46 on two.
    EXPECT_EQ(jest::super_batch_for(18, 0.6), 45);
    jest::JestConfig c;
    c.batch = 18;
    c.chunks = 3;
    EXPECT_EQ(error_of([&] { c.validate(45, 1); }), "");
    const std::string e = error_of([&] { c.validate(45, 2); });
    EXPECT_NE(e.find("super-batch B = 45"), std::string::npos) << e;
    EXPECT_NE(e.find("not divisible by the 2 ranks"), std::string::npos) << e;
    EXPECT_NE(e.find("jest.filter_ratio 0.590909 gives B = 44"), std::string::npos) << e;
    EXPECT_EQ(jest::super_batch_for(18, 1.0 - 18.0 / 44.0), 44);
    EXPECT_EQ(jest::super_batch_for(256, 0.8), 1280);
    EXPECT_NE(error_of([&] { jest::super_batch_for(18, 1.0); }).find("jest.filter_ratio"), std::string::npos);
}

}  // namespace
}  // namespace curaclip
