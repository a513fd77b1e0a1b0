// A small synthetic training set shared by the trainer-level MPI tests: a scratch
// folder named by rank 0, 64 labelled 8x8 images with captions, a BPE tokenizer
// trained on them, and the matching small model shape.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "core/philox.h"
#include "io/dataset_writer.h"
#include "model/model_config.h"
#include "mpi/communicator.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/trainer.h"

namespace curaclip::testing {

struct TrainFixture {
    std::string dir;  // holds train.h5 and tokenizer.bpe
    ModelConfig cfg;
};

constexpr int64_t kFixtureRows = 64;

// Collective. `on_root(dir)` may add more files; it runs on rank 0 before the barrier.
inline TrainFixture make_train_fixture(const Communicator& world, const std::string& name,
                                       const std::function<void(const std::string&)>& on_root = {}) {
    static const char* kWords[] = {"dark", "bright", "small", "large", "plain", "striped"};
    static const char* kClasses[] = {"shoe", "bag", "coat", "shirt"};
    int64_t nonce = 0;
    if (world.rank() == 0) nonce = int64_t(::getpid());
    world.broadcast(&nonce, 1, 0);
    namespace fs = std::filesystem;
    TrainFixture f;
    f.dir = (fs::temp_directory_path() / ("curaclip_" + name + "_" + std::to_string(nonce))).string();
    f.cfg.image_size = 8;
    f.cfg.patch_size = 4;
    f.cfg.channels = 1;
    f.cfg.image_mean = {0.5f};
    f.cfg.image_std = {0.25f};
    f.cfg.vision = {16, 1, 2, 2};
    f.cfg.text = {16, 1, 2, 2};
    f.cfg.context_length = 8;
    f.cfg.embed_dim = 16;
    if (world.rank() == 0) {
        fs::remove_all(f.dir);
        fs::create_directories(f.dir);
        io::DatasetContents d;
        d.count = kFixtureRows;
        d.image_size = 8;
        d.channels = 1;
        d.context_length = 8;
        Philox rng(11, RngPurpose::test);
        for (int64_t i = 0; i < kFixtureRows; ++i) {
            const int cls = int(i % 4);
            d.captions.push_back(std::string("a ") + kWords[rng.below(6)] + " " + kClasses[cls]);
            d.labels.push_back(cls);
            for (int p = 0; p < 64; ++p) d.images.push_back(uint8_t((cls * 60 + rng.below(64)) & 255));
        }
        const BpeTokenizer tok = BpeTokenizer::train(d.captions, 540);
        tok.save(f.dir + "/tokenizer.bpe");
        d.tokens = tok.encode_batch(d.captions, 8);
        d.classnames = {"shoe", "bag", "coat", "shirt"};
        io::DatasetAttributes a;
        a.tokenizer_id = tok.id_hex();
        a.source = "synthetic test data";
        io::write_dataset(f.dir + "/train.h5", d, a);
        if (on_root) on_root(f.dir);
    }
    world.barrier();
    f.cfg.vocab_size = BpeTokenizer::load(f.dir + "/tokenizer.bpe").vocab_size();
    return f;
}

// Silences stdout while alive: the trainer's progress lines would interleave across ranks.
class QuietStdout {
public:
    QuietStdout() {
        std::fflush(stdout);
        saved_ = dup(1);
        FILE* n = std::fopen("/dev/null", "w");
        dup2(fileno(n), 1);
        std::fclose(n);
    }
    ~QuietStdout() {
        std::fflush(stdout);
        dup2(saved_, 1);
        close(saved_);
    }
    QuietStdout(const QuietStdout&) = delete;
    QuietStdout& operator=(const QuietStdout&) = delete;

private:
    int saved_;
};

// Captures stdout while alive (into an unlinked temporary file); text() reads it back.
class CaptureStdout {
public:
    CaptureStdout() {
        std::fflush(stdout);
        saved_ = dup(1);
        file_ = std::tmpfile();
        dup2(fileno(file_), 1);
    }
    ~CaptureStdout() {
        restore();
        std::fclose(file_);
    }
    std::string text() {
        restore();
        std::string out;
        std::rewind(file_);
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
        return out;
    }
    CaptureStdout(const CaptureStdout&) = delete;
    CaptureStdout& operator=(const CaptureStdout&) = delete;

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stdout);
        dup2(saved_, 1);
        close(saved_);
        saved_ = -1;
    }
    int saved_ = -1;
    FILE* file_ = nullptr;
};

// Options of a short run on the fixture: batch 8, seed 5, lr 2e-3, clip 1, a log line
// per step.
inline TrainOptions fixture_train_options(const TrainFixture& f, const std::string& out, int64_t steps,
                                          int64_t warmup = 0) {
    TrainOptions o;
    o.train_path = f.dir + "/train.h5";
    o.tokenizer_path = f.dir + "/tokenizer.bpe";
    o.out_dir = out;
    o.global_batch = 8;
    o.steps = steps;
    o.seed = 5;
    o.optim.lr = 2e-3;
    o.optim.warmup_steps = warmup;
    o.optim.total_steps = steps;
    o.optim.grad_clip_norm = 1.0;
    o.log_every = 1;
    return o;
}

}  // namespace curaclip::testing
