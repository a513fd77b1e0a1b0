// Which attention path the CUDA backend takes, decided on the host and kept apart from
// cuDNN (no CUDA or cuDNN header here) so that tests/unit/test_cuda_sdpa_policy.cpp checks
// the decisions without a GPU. attention_cudnn.cpp owns one SdpaPolicy per backend.
//
// The rules (docs/cuda.md, "Attention"):
//  - cuDNN's fused SDPA runs first; the own kernels (attention.cu) run wherever cuDNN
//    declines, and a decline is a refusal, never an error:
//      * CURACLIP_CUDA_NO_CUDNN_SDPA=1: cuDNN is never asked;
//      * cuDNN cannot start (cudnnCreate fails: missing or mismatched sub-libraries on the
//        node): one line on stderr, then the own kernels for every shape (issue 16: this
//        used to make every attention call throw);
//      * a shape's graph is refused (build, heuristics, support check): one line per shape.
//  - the backward asks for cuDNN's deterministic algorithm first. Where that is refused:
//      * by default the non-deterministic variant (dQ summed with atomics) runs, said once;
//      * with CURACLIP_CUDA_DETERMINISTIC=1 the own kernels run instead (no atomics), so
//        a test that compares bits (bucketed vs plain backward) cannot fail for cuDNN's
//        reasons; attention_report() says which path each shape took.
#pragma once

#include <functional>
#include <string>
#include <utility>

namespace curaclip::cuda {

enum class SdpaPath { cudnn, cudnn_nondeterministic, own_kernel };

inline const char* sdpa_path_name(SdpaPath p) {
    switch (p) {
        case SdpaPath::cudnn: return "cuDNN";
        case SdpaPath::cudnn_nondeterministic: return "cuDNN (non-deterministic)";
        case SdpaPath::own_kernel: return "own kernel";
    }
    return "?";
}

struct SdpaOptions {
    bool enabled = true;              // false: CURACLIP_CUDA_NO_CUDNN_SDPA=1
    bool deterministic_only = false;  // true: CURACLIP_CUDA_DETERMINISTIC=1
};

// The options from the two environment variables' values (nullptr: unset); "1" switches on.
inline SdpaOptions sdpa_options_from(const char* no_cudnn_sdpa, const char* deterministic) {
    auto on = [](const char* v) { return v != nullptr && v[0] == '1' && v[1] == '\0'; };
    SdpaOptions o;
    o.enabled = !on(no_cudnn_sdpa);
    o.deterministic_only = on(deterministic);
    return o;
}

class SdpaPolicy {
public:
    // say: where the one-line notices go (stderr in the backend, a string in tests).
    SdpaPolicy(SdpaOptions options, std::function<void(const std::string&)> say)
        : options_(options), say_(std::move(say)) {}

    const SdpaOptions& options() const { return options_; }

    // Whether cuDNN can be used at all. start() is called at most once, at the first
    // attention call that could use cuDNN; it returns "" on success or why cuDNN could not
    // start. A failure is said once and remembered: every later call answers false.
    template <typename Start>
    bool started(Start&& start) {
        if (!options_.enabled) return false;
        if (state_ == State::not_tried) {
            start_failure_ = start();
            state_ = start_failure_.empty() ? State::ready : State::failed;
            if (state_ == State::failed)
                say_("curaclip cuda: cuDNN cannot start (" + start_failure_ +
                     "); the own attention kernels run for every shape");
        }
        return state_ == State::ready;
    }
    bool start_failed() const { return state_ == State::failed; }
    const std::string& start_failure() const { return start_failure_; }

    // A forward shape: build(why) builds its graph, true if cuDNN took it (else why says
    // why not). Called once per shape; the answer is cached by the caller.
    template <typename Build>
    SdpaPath forward(const std::string& shape, Build&& build) {
        std::string why;
        if (build(why)) return SdpaPath::cudnn;
        say_("curaclip cuda: cuDNN SDPA " + shape + " refused (" + why + "); the own attention kernel runs for it");
        return SdpaPath::own_kernel;
    }

    // A backward shape: build(deterministic, why) builds the graph with or without cuDNN's
    // deterministic algorithm. The deterministic one first; the other only where allowed.
    template <typename Build>
    SdpaPath backward(const std::string& shape, Build&& build) {
        std::string why;
        if (build(true, why)) return SdpaPath::cudnn;
        if (options_.deterministic_only) {
            say_("curaclip cuda: cuDNN SDPA " + shape + ": deterministic backward refused (" + why +
                 "); CURACLIP_CUDA_DETERMINISTIC=1: the own attention kernel runs for it");
            return SdpaPath::own_kernel;
        }
        std::string why2;
        if (build(false, why2)) {
            if (!told_nondeterministic_)
                say_("curaclip cuda: cuDNN refused its deterministic SDPA backward (" + shape + ": " + why +
                     "); using the default (non-deterministic) one (CURACLIP_CUDA_DETERMINISTIC=1 runs the own "
                     "kernel instead)");
            told_nondeterministic_ = true;
            return SdpaPath::cudnn_nondeterministic;
        }
        say_("curaclip cuda: cuDNN SDPA " + shape + " refused (" + why + "; non-deterministic variant: " + why2 +
             "); the own attention kernel runs for it");
        return SdpaPath::own_kernel;
    }

    // The report's opening: why no shape used cuDNN, or empty where cuDNN is in use.
    std::string unavailable_note() const {
        if (!options_.enabled) return "cuDNN SDPA off (CURACLIP_CUDA_NO_CUDNN_SDPA=1): own attention kernels";
        if (state_ == State::failed) return "cuDNN cannot start (" + start_failure_ + "): own attention kernels";
        return "";
    }

private:
    enum class State { not_tried, ready, failed };
    SdpaOptions options_;
    std::function<void(const std::string&)> say_;
    State state_ = State::not_tried;
    std::string start_failure_;
    bool told_nondeterministic_ = false;
};

}  // namespace curaclip::cuda
